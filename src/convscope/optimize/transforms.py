"""Transformation robustness (Olah et al. 2017): random, differentiable changes of the image
applied before every forward pass, so the optimized picture works under all of them.

A transform is a callable ``(images, generator) -> images``; one random draw per step is
shared by the whole batch (as in lucent). :data:`STANDARD` is lucent's ``standard_transforms``:
pad 12 (constant 0.5), jitter 8, scale 0.90…1.10 in steps of 0.02, rotate −10…10° (with
five extra 0°), jitter 4. Rotation uses ``affine_grid``/``grid_sample`` (lucent uses kornia).
"""

from __future__ import annotations

__all__ = ["compose", "jitter", "pad", "random_rotate", "random_scale", "roll", "STANDARD", "Transform"]

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _choice(options: Sequence, generator: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels (``constant`` grey or ``reflect``)."""

    def transform(images, generator):
        return (
            F.pad(images, (width,) * 4, mode=mode, value=value)
            if mode == "constant"
            else F.pad(images, (width,) * 4, mode=mode)
        )

    return transform


def jitter(distance: int) -> Transform:
    """Crop a random window ``distance`` pixels smaller in each direction (lucent's jitter)."""

    def transform(images, generator):
        dy, dx = (int(v) for v in torch.randint(distance, (2,), generator=generator))
        height, width = images.shape[-2:]
        return images[..., dy : dy + height - distance, dx : dx + width - distance]

    return transform


def roll(distance: int) -> Transform:
    """Shift the image circularly by up to ``distance`` pixels (google/deepdream's jitter)."""

    def transform(images, generator):
        dy, dx = (int(v) for v in torch.randint(-distance, distance + 1, (2,), generator=generator))
        return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))

    return transform


def random_scale(factors: Sequence[float]) -> Transform:
    """Resize by a factor drawn from ``factors`` (bilinear)."""

    def transform(images, generator):
        factor = float(_choice(factors, generator))
        if factor == 1.0:
            return images
        size = [max(1, round(side * factor)) for side in images.shape[-2:]]
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    return transform


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate about the centre by an angle (degrees) drawn from ``degrees``; corners are filled by
    border replication."""

    def transform(images, generator):
        angle = math.radians(float(_choice(degrees, generator)))
        if angle == 0.0:
            return images
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype, device=images.device)
        grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return transform


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` in order."""

    def transform(images, generator):
        for step in transforms:
            images = step(images, generator)
        return images

    return transform


#: lucent's standard_transforms.
STANDARD: tuple[Transform, ...] = (
    pad(12),
    jitter(8),
    random_scale([1 + (i - 5) / 50 for i in range(11)]),
    random_rotate(list(range(-10, 11)) + [0] * 5),
    jitter(4),
)
