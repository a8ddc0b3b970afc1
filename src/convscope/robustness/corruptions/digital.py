"""Digital corruptions: brightness, saturate, contrast, pixelate, JPEG and elastic transform."""

from __future__ import annotations

__all__ = ["brightness", "contrast", "elastic_transform", "jpeg_compression", "pixelate", "saturate"]

import torch
import torch.nn.functional as F

from ...filters import jpeg
from ._filters import _gaussian, _uniform
from .registry import CORRUPTIONS


@CORRUPTIONS.register(category="digital", deterministic=True)
def brightness(x, severity, generator):
    """Add .1 .. .5 to the HSV value (hue and saturation kept: channels scale by V'/V)."""
    shift = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(0, 1)
    scaled = x * new_value / value.clamp_min(1e-12)
    return torch.where(value > 0, scaled, new_value.expand_as(x))


@CORRUPTIONS.register(category="digital", deterministic=True)
def saturate(x, severity, generator):
    """Scale and shift the HSV saturation, ``s * a + b`` with (a, b) per severity.

    With hue and value fixed each channel is ``v - v * s * f(h)``, so the distance to the value
    scales with the saturation; grey pixels have hue 0 (red) as in ``skimage.color.rgb2hsv``.
    """
    factor, offset = [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)][severity - 1]
    value = x.amax(dim=1, keepdim=True)
    saturation = torch.where(
        value > 0, (value - x.amin(dim=1, keepdim=True)) / value.clamp_min(1e-12), torch.zeros_like(value)
    )
    new_saturation = (saturation * factor + offset).clamp(0, 1)
    colored = value - (value - x) * new_saturation / saturation.clamp_min(1e-12)
    red_hue = torch.cat([value, value * (1 - new_saturation), value * (1 - new_saturation)], dim=1)
    return torch.where(saturation > 0, colored, red_hue)


@CORRUPTIONS.register(category="digital", deterministic=True)
def contrast(x, severity, generator):
    """Pull every channel towards its mean by a factor .4 .3 .2 .1 .05."""
    factor = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


def _box_matrix(size_in: int, size_out: int, device) -> torch.Tensor:
    """PIL's BOX resampling as a matrix: an output pixel averages the input pixels whose centres
    fall in its footprint."""
    centres = torch.arange(size_in, device=device, dtype=torch.float64) + 0.5
    scale = size_in / size_out
    starts = torch.arange(size_out, device=device, dtype=torch.float64)[:, None] * scale
    members = ((centres[None] >= starts) & (centres[None] < starts + scale)).double()
    return members / members.sum(dim=1, keepdim=True)


@CORRUPTIONS.register(category="digital", deterministic=True)
def pixelate(x, severity, generator):
    """Downscale by .6 .5 .4 .3 .25 with a BOX filter and upscale back with NEAREST (as PIL)."""
    factor = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
    h, w = x.shape[-2:]
    small_h, small_w = int(h * factor), int(w * factor)
    small = _box_matrix(h, small_h, x.device).to(x) @ x @ _box_matrix(w, small_w, x.device).to(x).T
    rows = ((torch.arange(h, device=x.device) + 0.5) * small_h / h).floor().long().clamp(max=small_h - 1)
    cols = ((torch.arange(w, device=x.device) + 0.5) * small_w / w).floor().long().clamp(max=small_w - 1)
    return small.index_select(2, rows).index_select(3, cols)


@CORRUPTIONS.register(category="digital", deterministic=True)
def jpeg_compression(x, severity, generator):
    """JPEG re-encoding at quality 25 18 15 10 7 (libjpeg through ``torchvision.io``; on CPU)."""
    return jpeg(x, [25, 18, 15, 10, 7][severity - 1])


def _reflect_coordinates(coords: torch.Tensor, size: int) -> torch.Tensor:
    """scipy's 'reflect' (half-sample symmetric) boundary for sampling coordinates."""
    period = 2 * size
    coords = (coords + 0.5).remainder(period)
    coords = torch.where(coords >= size, period - coords, coords) - 0.5
    return coords.clamp(0, size - 1)


@CORRUPTIONS.register(category="digital")
def elastic_transform(x, severity, generator):
    """Warp by smoothed random displacements (sigma 1 % of the size, alpha 250 x .05 .. .12)."""
    alpha = 250 * [0.05, 0.065, 0.085, 0.1, 0.12][severity - 1]
    n, _, h, w = x.shape
    sigma = (h * 0.01, w * 0.01)
    limit = h * 0.005
    displacement = _uniform((n, 2, h, w), -limit, limit, generator, x.device)
    displacement = _gaussian(displacement, sigma, mode="symmetric", truncate=3) * alpha
    rows = torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None] + displacement[:, 1]
    cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :] + displacement[:, 0]
    rows, cols = _reflect_coordinates(rows, h), _reflect_coordinates(cols, w)
    grid = torch.stack([2 * cols / (w - 1) - 1, 2 * rows / (h - 1) - 1], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
