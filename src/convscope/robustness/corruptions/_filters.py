"""Filters the corruptions share: random draws, scipy-exact border modes, the Gaussian, zoom,
motion blur and grey conversion (each reproducing the reference's OpenCV/scipy/skimage call)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...filters import gaussian_kernel


def _uniform(shape, low, high, generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _normal(shape, mean, std, generator, device) -> torch.Tensor:
    return mean + std * torch.randn(shape, generator=generator, device=device)


def _pad_index(size: int, pad: int, mode: str, device) -> torch.Tensor:
    """Source indices of a 1-D padding: ``replicate`` (scipy 'nearest'), ``symmetric`` (scipy
    'reflect', d c b a | a b c d) or ``reflect101`` (OpenCV's default border, d c b | a b c d)."""
    index = torch.arange(-pad, size + pad, device=device)
    if mode == "replicate":
        return index.clamp(0, size - 1)
    period = 2 * size if mode == "symmetric" else max(2 * size - 2, 1)
    index = index.remainder(period)
    if mode == "symmetric":
        return torch.where(index >= size, period - 1 - index, index)
    return torch.where(index >= size, period - index, index)


def _filter_1d(x: torch.Tensor, kernel: torch.Tensor, dim: int, mode: str) -> torch.Tensor:
    """Correlate every (N, C) plane of ``x`` with a 1-D kernel along ``dim`` (2: rows, 3: columns)."""
    pad = kernel.numel() // 2
    x = x.index_select(dim, _pad_index(x.shape[dim], pad, mode, x.device))
    n, c, h, w = x.shape
    weight = kernel.to(x)
    weight = weight.view(1, 1, -1, 1) if dim == 2 else weight.view(1, 1, 1, -1)
    out = F.conv2d(x.reshape(n * c, 1, h, w), weight)
    return out.view(n, c, *out.shape[-2:])


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    return gaussian_kernel(sigma, truncate)  # scipy's radius rule, float64


def _gaussian(
    x: torch.Tensor, sigma: float | tuple[float, float], mode: str = "replicate", truncate: float = 4.0
) -> torch.Tensor:
    """``skimage.filters.gaussian`` / ``scipy.ndimage.gaussian_filter`` on the spatial axes."""
    sigma_h, sigma_w = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    x = _filter_1d(x, _gaussian_kernel(sigma_h, truncate), 2, mode)
    return _filter_1d(x, _gaussian_kernel(sigma_w, truncate), 3, mode)


def _conv_same(x: torch.Tensor, kernel: torch.Tensor, mode: str = "reflect101") -> torch.Tensor:
    """``cv2.filter2D`` (correlation, default border) of every plane with a 2-D kernel."""
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    x = x.index_select(2, _pad_index(x.shape[2], ph, mode, x.device))
    x = x.index_select(3, _pad_index(x.shape[3], pw, mode, x.device))
    n, c, h, w = x.shape
    out = F.conv2d(x.reshape(n * c, 1, h, w), kernel.to(x)[None, None])
    return out.view(n, c, *out.shape[-2:])


def _clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Zoom into the centre of each plane by ``zoom`` and keep the top-left H x W, as the
    reference's ``clipped_zoom`` (``scipy.ndimage.zoom``, order 1, ``grid_mode=False``)."""
    axes = []
    for size in x.shape[-2:]:
        crop = int(math.ceil(size / zoom))
        top = (size - crop) // 2
        out = int(round(crop * zoom))
        scale = (crop - 1) / (out - 1) if out > 1 else 0.0
        coords = torch.arange(min(out, size), dtype=torch.float64, device=x.device) * scale + top
        axes.append((2 * coords / (size - 1) - 1).to(x))
    grid = torch.stack(torch.meshgrid(axes[1], axes[0], indexing="xy"), dim=-1)
    return F.grid_sample(
        x, grid[None].expand(x.shape[0], -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=True
    )


def _motion_blur(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """The reference's ``_motion_blur``: a 1-D Gaussian-weighted sum of copies shifted along a
    line at ``angle`` degrees (one angle per image), edges replicated."""
    n, c, h, w = x.shape
    width = 2 * radius + 1
    kernel = torch.exp(-(torch.arange(width, dtype=torch.float64) ** 2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).tolist()
    radians = torch.deg2rad(angle.double().cpu())
    steps = torch.arange(width, dtype=torch.float64)
    dy = -torch.ceil(steps[None] * torch.sin(radians)[:, None] - 0.5).long()
    dx = -torch.ceil(steps[None] * torch.cos(radians)[:, None] - 0.5).long()
    inside = ((dy.abs() < h) & (dx.abs() < w)).long().cumprod(dim=1).bool()
    pad = width
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    out = torch.zeros_like(x)
    for image in range(n):  # integer shifts are slices of the edge-padded image
        for step in range(width):
            if not inside[image, step]:
                break
            top, left = pad - int(dy[image, step]), pad - int(dx[image, step])
            out[image] += kernel[step] * padded[image, :, top : top + h, left : left + w]
    return out


def _gray(x: torch.Tensor) -> torch.Tensor:
    """``cv2.COLOR_RGB2GRAY`` weights, (N, 1, H, W)."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def _per_image(values, x: torch.Tensor) -> torch.Tensor:
    return values.to(x).view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- noise
