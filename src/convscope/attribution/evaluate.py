"""Faithfulness of a map: deletion and insertion curves (Petsiuk, Das & Saenko 2018, RISE).

Pixels are ranked by the map (most important first). *Deletion* replaces them, a growing
fraction at a time, by a substrate (black, as the paper) and records the probability of
the class: a faithful map makes it fall fast (low AUC is good). *Insertion* starts from a
blurred copy and puts the original pixels back in the same order: a faithful map makes
the probability rise fast (high AUC is good). AUC is the trapezoid area under the
probability over the fraction of pixels in [0, 1]. Per-channel maps are ranked by the sum
of |map| over channels; a map of another size is upsampled bilinearly to the image first.
"""

from __future__ import annotations

__all__ = ["causal_curve", "Curve", "deletion", "insertion", "pixel_order"]

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check_images, model_device
from ..errors import ConvscopeError
from ..filters import gaussian_blur
from ..hooks import frozen
from .noise import fixed_targets


@dataclass
class Curve:
    """One deletion or insertion curve per image.

    Attributes:
        kind: ``"deletion"`` or ``"insertion"``.
        fractions: (steps + 1,) fraction of pixels changed at each point.
        scores: (N, steps + 1) probability of the target class at each point.
        auc: (N,) area under each curve.
    """

    kind: str
    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor


def pixel_order(heat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H*W) pixel indices from the most to the least important."""
    heat = heat.detach().float()
    if heat.shape[1] != 1:
        heat = heat.abs().sum(dim=1, keepdim=True)
    if tuple(heat.shape[-2:]) != tuple(size):
        heat = F.interpolate(heat, size=size, mode="bilinear", align_corners=False)
    return heat.flatten(1).argsort(dim=1, descending=True, stable=True)


def causal_curve(
    model,
    x: torch.Tensor,
    heat: torch.Tensor,
    target=None,
    kind: str = "deletion",
    steps: int = 32,
    batch_size: int = 33,
    blur_sigma: float = 5.0,
) -> Curve:
    """Deletion or insertion curve of ``heat`` (N, 1|3, h, w) for ``x`` (N, 3, H, W).

    Args:
        kind: ``"deletion"`` (substrate black) or ``"insertion"`` (start from a Gaussian blur
            of ``blur_sigma`` pixels, kernel 11 as in the RISE code).
        steps: number of equal pixel fractions (the curve has ``steps + 1`` points).
        batch_size: perturbed images per forward pass.
    """
    if kind not in ("deletion", "insertion"):
        raise ConvscopeError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    x = check_images(x)
    x = x.to(model_device(model)).detach()
    if heat.shape[0] != x.shape[0]:
        raise ConvscopeError(f"{heat.shape[0]} maps for {x.shape[0]} images")
    height, width = x.shape[-2:]
    order = pixel_order(heat.to(x.device), (height, width))
    total = height * width
    counts = [round(total * k / steps) for k in range(steps + 1)]
    if kind == "deletion":
        start, finish = x, torch.zeros_like(x)
    else:
        start, finish = gaussian_blur(x, blur_sigma, radius=5), x
    scores = torch.zeros(x.shape[0], steps + 1)
    with frozen(model), torch.no_grad():
        ids = fixed_targets(model, x, target)
        for index in range(x.shape[0]):
            rank = torch.empty(total, dtype=torch.long, device=x.device)
            rank[order[index]] = torch.arange(total, device=x.device)
            for first in range(0, steps + 1, batch_size):
                chosen = torch.tensor(counts[first : first + batch_size], device=x.device)
                mask = (rank[None] < chosen[:, None]).view(-1, 1, height, width).to(x.dtype)
                images = start[index : index + 1] * (1 - mask) + finish[index : index + 1] * mask
                probabilities = model(images).softmax(dim=-1)
                target_here = ids[index] if isinstance(ids, torch.Tensor) else None
                if target_here is None:
                    raise ConvscopeError("deletion/insertion needs class targets, not a callable")
                scores[index, first : first + len(chosen)] = probabilities[:, target_here].cpu()
    fractions = torch.tensor(counts, dtype=torch.float32) / total
    auc = torch.trapezoid(scores, fractions, dim=1)
    return Curve(kind, fractions, scores, auc)


def deletion(model, x, heat, target=None, steps: int = 32, batch_size: int = 33) -> Curve:
    """Deletion curve and AUC (lower is better), see :func:`causal_curve`."""
    return causal_curve(model, x, heat, target, "deletion", steps, batch_size)


def insertion(model, x, heat, target=None, steps: int = 32, batch_size: int = 33) -> Curve:
    """Insertion curve and AUC (higher is better), see :func:`causal_curve`."""
    return causal_curve(model, x, heat, target, "insertion", steps, batch_size)
