"""The registry of corruptions and the names of the benchmark (Hendrycks & Dietterich 2019)."""

from __future__ import annotations

from typing import Protocol

import torch

from ...registry import Registry

__all__ = ["BENCHMARK_CORRUPTIONS", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "Corruption", "CorruptionFn"]


class Corruption(Protocol):
    """The contract of a registered corruption: a batch (N, 3, H, W) in [0, 1], a severity
    1..5 and the generator of every random draw -> float images in [0, 1] of the same shape."""

    __name__: str

    def __call__(self, x: torch.Tensor, severity: int, generator: torch.Generator | None, /) -> torch.Tensor: ...


CorruptionFn = Corruption  # the former name

CORRUPTIONS: Registry[Corruption] = Registry("corruption", category=None, deterministic=False)
"""Name -> ``fn(x, severity, generator)``; names as in ``imagecorruptions``. Metadata:
``category`` (``noise`` | ``blur`` | ``weather`` | ``digital``, as Hendrycks & Dietterich group
them) and ``deterministic`` (no random draws: equal to the reference pixel for pixel)."""

BENCHMARK_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
