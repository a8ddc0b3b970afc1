"""Occlusion sensitivity (Zeiler & Fergus 2014): slide a grey patch, watch the class score drop.

Attribution of a pixel = mean, over the windows covering it, of ``score(x) - score(x with
the window set to `fill`)``. Conventions: grey fill 0.5 (the paper's grey square; captum's
baseline is 0), the class logit as score (``objective="probability"`` gives the paper's
probability of the correct class), windows at ``0, stride, 2 stride, ...`` as captum, plus
one window flush with the right/bottom edge when the stride does not reach it, so every
pixel is covered (captum leaves such edge pixels at 0). The same patch covers all colour
channels, so the map is (N, 1, H, W). Occluded copies are evaluated ``batch_size`` at a time.
"""

from __future__ import annotations

__all__ = ["occlusion", "window_starts"]

import torch

from ..errors import ConvscopeError
from .gradients import objective_score
from .noise import fixed_targets
from .registry import METHODS


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows along one side, the last one flush with the edge."""
    if window < 1 or stride < 1 or window > length:
        raise ConvscopeError(f"occlusion window {window} / stride {stride} do not fit an image side of {length}")
    if stride > window:
        raise ConvscopeError(f"occlusion stride {stride} > window {window} would leave pixels uncovered")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


@METHODS.register(kind="perturbation", display="signed", unit="drop in {objective} when hidden")
def occlusion(
    model,
    x,
    target=None,
    window: int = 32,
    stride: int = 16,
    fill: float = 0.5,
    batch_size: int = 64,
    objective: str = "logit",
    progress: bool = False,
) -> torch.Tensor:
    """Occlusion map (N, 1, H, W): positive where hiding the pixel lowers the class score.

    Args:
        window: side of the square patch in pixels (odd or even).
        stride: step between windows.
        fill: the patch value in [0, 1] RGB (0.5 grey).
        batch_size: occluded images per forward pass.
        progress: show a progress bar over the forward passes.
    """
    ids = fixed_targets(model, x, target)
    height, width = x.shape[-2:]
    boxes = [
        (top, left) for top in window_starts(height, window, stride) for left in window_starts(width, window, stride)
    ]
    heat = torch.zeros(x.shape[0], 1, height, width, device=x.device, dtype=x.dtype)
    counts = torch.zeros(1, 1, height, width, device=x.device, dtype=x.dtype)
    for top, left in boxes:
        counts[..., top : top + window, left : left + window] += 1
    from ..progress import track

    chunks = range(0, len(boxes), max(1, batch_size))
    with torch.no_grad():
        for index in range(x.shape[0]):
            image = x[index : index + 1]
            target_here = ids[index : index + 1] if isinstance(ids, torch.Tensor) else ids
            clean = objective_score(model, image, target_here, objective)
            for start in track(chunks, f"occlusion {index + 1}/{x.shape[0]}", progress):
                part = boxes[start : start + batch_size]
                copies = image.repeat(len(part), 1, 1, 1)
                for k, (top, left) in enumerate(part):
                    copies[k, :, top : top + window, left : left + window] = fill
                targets = target_here.expand(len(part)) if isinstance(ids, torch.Tensor) else ids
                drops = clean - objective_score(model, copies, targets, objective)
                for k, (top, left) in enumerate(part):
                    heat[index, 0, top : top + window, left : left + window] += drops[k]
    return heat / counts
