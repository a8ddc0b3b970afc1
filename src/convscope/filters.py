"""Low-level image operations shared by the methods, one implementation each: the Gaussian
kernel and separable blur, the JPEG round trip and the resizing of maps.

* :func:`gaussian_kernel` is ``exp(-x²/2σ²)`` normalised, of radius ``int(truncate·σ + 0.5)``
  (scipy's rule; ``truncate=3`` gives the ⌈3σ⌉ radius torchvision users pass as a kernel size).
* :func:`gaussian_blur` is separable with reflected borders (torchvision's ``gaussian_blur`` and
  the optimization regularizer), ``sigma`` a number or one per image (EOT's random blur).
* :func:`jpeg` re-encodes through libjpeg (``torchvision.io``) on CPU and returns float images.
* :func:`resize_map` resizes (N, C, h, w) maps bilinearly (``align_corners=False``) or by nearest.

The ImageNet-C corruptions keep their own scipy-exact border modes but use this kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import ConvscopeError

__all__ = ["gaussian_blur", "gaussian_kernel", "jpeg", "resize_map"]


def gaussian_kernel(
    sigma: float, truncate: float = 4.0, radius: int | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A normalised 1-D Gaussian (2·radius + 1 taps)."""
    radius = int(truncate * sigma + 0.5) if radius is None else int(radius)
    offsets = torch.arange(-radius, radius + 1, dtype=dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(
    x: torch.Tensor, sigma: float | torch.Tensor, radius: int | None = None, truncate: float = 3.0
) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflected borders.

    Args:
        sigma: one σ for the batch, or a Tensor[N] of one σ per image (σ → 0 keeps the image).
        radius: kernel radius (default ``max(1, int(truncate·σ + 0.5))`` of the largest σ).
    """
    count, channels, height, width = x.shape
    sigmas = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if radius is None:
        radius = max(1, int(truncate * float(sigmas.max()) + 0.5))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernels = torch.exp(-0.5 * (offsets[None] / sigmas[:, None].clamp_min(1e-3)) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (1 or N, K)
    if kernels.shape[0] == 1:
        weights, groups, flat = kernels.expand(channels, -1), channels, x
    else:
        weights, groups = kernels.repeat_interleave(channels, 0), count * channels
        flat = x.reshape(1, count * channels, height, width)
    taps = 2 * radius + 1
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), weights.reshape(-1, 1, 1, taps), groups=groups)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), weights.reshape(-1, 1, taps, 1), groups=groups)
    return flat.reshape(count, channels, height, width)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG encode + decode of (N, 3, H, W) in [0, 1] at ``quality`` (libjpeg; not differentiable):
    quantised to uint8 first, returned as float in [0, 1] on ``x``'s device and dtype."""
    from torchvision.io import decode_jpeg, encode_jpeg

    images = list((x.detach() * 255).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.stack(decode_jpeg(encode_jpeg(images, quality=int(quality)))).to(x.device, x.dtype) / 255


def resize_map(heat: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W), bilinear (``align_corners=False``) or nearest; unchanged when
    already at ``size``."""
    if interpolation not in ("bilinear", "nearest"):
        raise ConvscopeError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    if tuple(heat.shape[-2:]) == tuple(size):
        return heat
    extra = {"align_corners": False} if interpolation == "bilinear" else {}
    return F.interpolate(heat, size=tuple(size), mode=interpolation, **extra)
