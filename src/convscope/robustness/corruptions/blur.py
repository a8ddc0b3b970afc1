"""Blur corruptions: defocus, gaussian, glass, motion and zoom blur."""

from __future__ import annotations

__all__ = ["defocus_blur", "gaussian_blur", "glass_blur", "motion_blur", "zoom_blur"]

import numpy as np
import torch

from ._filters import _clipped_zoom, _conv_same, _gaussian, _motion_blur, _uniform
from .registry import CORRUPTIONS


def _disk(radius: int, alias_blur: float) -> torch.Tensor:
    """The reference's anti-aliased disk kernel (``cv2.GaussianBlur`` of an aliased disk)."""
    half = 8 if radius <= 8 else radius
    size = 3 if radius <= 8 else 5
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((grid[None] ** 2 + grid[:, None] ** 2) <= radius**2).double()
    disk /= disk.sum()
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    gauss = torch.exp(-(offsets**2) / (2 * alias_blur**2))
    gauss /= gauss.sum()
    return _conv_same(disk[None, None], gauss[:, None] * gauss[None, :])[0, 0]


@CORRUPTIONS.register(category="blur", deterministic=True)
def defocus_blur(x, severity, generator):
    """Convolution with an anti-aliased disk of radius 3 4 6 8 10."""
    radius, alias = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
    return _conv_same(x, _disk(radius, alias))


@CORRUPTIONS.register(category="blur", deterministic=True)
def gaussian_blur(x, severity, generator):
    """Gaussian blur, sigma 1 2 3 4 6 (skimage ``gaussian``, 'nearest' border, truncate 4)."""
    return _gaussian(x, [1, 2, 3, 4, 6][severity - 1])


@CORRUPTIONS.register(category="blur")
def glass_blur(x, severity, generator):
    """Blur, locally shuffle pixels (max offset delta, several iterations), blur again."""
    sigma, delta, iterations = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    x = torch.floor(_gaussian(x, sigma).clamp(0, 1) * 255) / 255  # the reference's np.uint8 step
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :, None].expand(n, h, w)
    cols = torch.arange(w, device=x.device)[None, None, :].expand(n, h, w)
    interior = (rows > delta) & (rows <= h - delta) & (cols > delta) & (cols <= w - delta)
    for _ in range(iterations):
        offsets = torch.randint(-delta, delta, (2, n, h, w), generator=generator, device=x.device)
        source_rows = torch.where(interior, rows + offsets[0], rows).clamp(0, h - 1)
        source_cols = torch.where(interior, cols + offsets[1], cols).clamp(0, w - 1)
        flat = (source_rows * w + source_cols).view(n, 1, h * w).expand(n, c, h * w)
        x = x.reshape(n, c, h * w).gather(2, flat).view(n, c, h, w)
    return _gaussian(x, sigma)


@CORRUPTIONS.register(category="blur")
def motion_blur(x, severity, generator):
    """Blur along a line at a random angle in [-45, 45) degrees; (radius, sigma) per severity."""
    radius, sigma = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    angle = _uniform((x.shape[0],), -45.0, 45.0, generator, x.device)
    return _motion_blur(x, radius, sigma, angle)


_ZOOMS = [
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.02),
    np.arange(1, 1.26, 0.02),
    np.arange(1, 1.31, 0.03),
]


@CORRUPTIONS.register(category="blur", deterministic=True)
def zoom_blur(x, severity, generator):
    """Average of the image and centre zooms up to 1.11 1.16 1.21 1.26 1.31."""
    zooms = _ZOOMS[severity - 1]
    out = x.clone()
    for zoom in zooms:
        out += _clipped_zoom(x, float(zoom))
    return out / (len(zooms) + 1)


# ----------------------------------------------------------------------------- weather
