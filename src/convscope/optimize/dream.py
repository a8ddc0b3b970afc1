"""DeepDream (Mordvintsev, Olah & Tyka 2015): amplify what a layer sees in a photo.

Gradient ascent on ``layer_energy`` (½‖h‖², "set h̄ = h") starting from the photo, over
an image pyramid ("octaves"): the smallest octave first, then each larger one starts
from the photo at that size plus the detail (image − photo) grown so far, upsampled.
Each step rolls the image by a random shift and moves it by ``lr / mean|g|`` · g, as
google/deepdream does (4 octaves × 1.4, 10 steps, jitter 32, step 1.5 on 0–255 ≈ 0.006
here). Deviation: the default step is 0.01 (stronger patterns on the small embedded
model at 10 steps per octave).
"""

from __future__ import annotations

__all__ = ["Dream", "dream"]

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images
from ..errors import ConvscopeError
from .loop import optimize
from .objectives import Objective, layer_energy
from .params import image_param
from .transforms import roll


@dataclass
class Dream:
    """A dreamed image and its record.

    Attributes:
        image: (N, 3, H, W) in [0, 1], the size of the input.
        layer: the layer (or objective) whose energy was ascended.
        histories: the objective at every step, one list per octave (smallest first).
        stopped: ``"done"`` or ``"interrupted"``.
    """

    image: torch.Tensor
    layer: str
    histories: list[list[float]]
    stopped: str = "done"


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def dream(
    model: nn.Module,
    image: torch.Tensor,
    layer: str,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    lr: float = 0.01,
    jitter: int = 32,
    objective: Objective | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Dream:
    """Dream ``image`` (N, 3, H, W) in [0, 1] at ``layer``.

    Args:
        model: any CNN taking RGB in [0, 1].
        image: the photos to start from.
        layer: dotted layer name whose energy is ascended (ignored when ``objective`` is given).
        octaves: pyramid levels (1 = no pyramid).
        octave_scale: size ratio between levels.
        steps: ascent steps per octave.
        lr: step size per step (mean absolute pixel change).
        jitter: largest random roll, pixels (at full size; scaled down with the octave).
        objective: another objective to ascend instead (e.g. ``channel(layer, c)``: a guided dream).
        seed: seeds the random rolls.
        progress: show progress bars.

    >>> dreamed = dream(model, load_image("sample:chelsea"), "blocks.3", octaves=3)
    """
    image = check_images(image, "image")
    if octaves < 1:
        raise ConvscopeError(f"octaves must be at least 1, got {octaves}")
    objective = objective or layer_energy(layer)
    height, width = image.shape[-2:]
    sizes = [
        (max(16, round(height / octave_scale**level)), max(16, round(width / octave_scale**level)))
        for level in reversed(range(octaves))
    ]
    detail = torch.zeros_like(_resize(image, sizes[0]))
    histories, stopped, current = [], "done", image
    for level, size in enumerate(sizes):
        base = _resize(image, size).clamp(0, 1)
        detail = _resize(detail, size) if tuple(detail.shape[-2:]) != size else detail
        start = (base + detail).clamp(0, 1)
        shift = max(1, round(jitter * size[0] / height))
        run = optimize(
            model,
            objective,
            image_param(init=start, basis="pixel", decorrelate=False, output="clamp"),
            transforms=[roll(shift)],
            steps=steps,
            lr=lr,
            optimizer="normalized",
            seed=seed + level,
            progress=progress,
            description=f"dream octave {level + 1}/{octaves}",
        )
        histories.append(run.history)
        current, detail = run.image, run.image - base
        if run.stopped == "interrupted":
            stopped = "interrupted"
            break
    if tuple(current.shape[-2:]) != (height, width):
        current = _resize(current, (height, width)).clamp(0, 1)
    return Dream(current, objective.name, histories, stopped)
