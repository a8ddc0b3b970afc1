"""Upsampling building blocks of segmentation networks, each one checkable by hand.

* :func:`max_pool_with_indices` / :func:`max_unpool` — SegNet's decoder (Badrinarayanan
  et al. 2017): the encoder remembers *where* each maximum came from and the decoder puts
  the value back there, zeros elsewhere (``torch.nn.functional.max_unpool2d``).
* :func:`stamp_transposed_conv` — transposed convolution as the CS231n / Dumoulin & Visin
  (2016) picture: multiply the kernel by each input pixel, stamp the product on the
  output at ``stride`` spacing, sum where stamps overlap, then crop ``padding`` from every
  side. A plain loop, slow on purpose; it equals ``torch.nn.functional.conv_transpose2d``
  (PyTorch's weight layout ``(in, out, kH, kW)``), which is what the networks use.
* :func:`bilinear_kernel` — the fixed kernel that makes a stride-``f`` transposed
  convolution a bilinear upsampling (Long et al. 2015 initialise FCN's learned
  upsampling layers with it; same formula as their ``upsample_filt``).
* :func:`bilinear_upsample` — ``F.interpolate(mode="bilinear", align_corners=False)``.
"""

from __future__ import annotations

__all__ = [
    "bilinear_kernel",
    "bilinear_upsample",
    "bilinear_upsample_transposed",
    "max_pool_with_indices",
    "max_unpool",
    "pad_to_multiple",
    "stamp_transposed_conv",
]

import torch
import torch.nn.functional as F

from ..errors import ConvscopeError


def max_pool_with_indices(
    x: torch.Tensor, kernel_size: int = 2, stride: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-pool (N, C, H, W) and return ``(pooled, indices)``; indices are flat positions in each H x W plane."""
    return F.max_pool2d(x, kernel_size, stride or kernel_size, return_indices=True)


def max_unpool(
    x: torch.Tensor,
    indices: torch.Tensor,
    kernel_size: int = 2,
    stride: int | None = None,
    output_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """SegNet unpooling: put each value of ``x`` back at the position its max came from, zeros elsewhere.

    Args:
        x: (N, C, h, w) values to place (the decoder's features).
        indices: (N, C, h, w) from :func:`max_pool_with_indices` on the encoder side.
        output_size: (H, W) of the encoder input (needed when H or W was odd).
    """
    if x.shape != indices.shape:
        raise ConvscopeError(
            f"unpooling needs indices of the same shape as x: {tuple(indices.shape)} vs {tuple(x.shape)}"
        )
    return F.max_unpool2d(x, indices, kernel_size, stride or kernel_size, output_size=output_size)


def stamp_transposed_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1, padding: int = 0
) -> torch.Tensor:
    """Transposed convolution by stamping: the worked example of the seeds, as a loop.

    Each input pixel ``x[n, i, r, c]`` scales the kernel ``weight[i, o]`` and the result is
    added to the output window starting at ``(r * stride, c * stride)``; overlapping stamps
    sum. ``padding`` is then cropped from every side (as in ``conv_transpose2d``).

    Args:
        x: (N, C_in, h, w).
        weight: (C_in, C_out, k, k), PyTorch's transposed-convolution layout.
        bias: (C_out,) or None.

    Returns:
        (N, C_out, (h - 1) * stride + k - 2 * padding, (w - 1) * stride + k - 2 * padding).

    >>> x = torch.tensor([[[[1., 2.], [3., 4.]]]]); k = torch.ones(1, 1, 3, 3)
    >>> stamp_transposed_conv(x, k, stride=2)[0, 0, 2]   # the middle row: overlaps sum
    tensor([ 4.,  4., 10.,  6.,  6.])
    """
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[0]:
        raise ConvscopeError(
            f"x (N, C, h, w) and weight (C, C_out, k, k) do not fit: {tuple(x.shape)}, {tuple(weight.shape)}"
        )
    batch, _, height, width = x.shape
    k_h, k_w = weight.shape[-2:]
    out = x.new_zeros(batch, weight.shape[1], (height - 1) * stride + k_h, (width - 1) * stride + k_w)
    for row in range(height):
        for col in range(width):
            stamp = torch.einsum("ni,iohw->nohw", x[:, :, row, col], weight)
            out[:, :, row * stride : row * stride + k_h, col * stride : col * stride + k_w] += stamp
    if padding:
        out = out[..., padding : out.shape[-2] - padding, padding : out.shape[-1] - padding]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """(channels, channels, 2f - f % 2, 2f - f % 2) weight: a channel-wise bilinear upsampler by ``factor``.

    With ``stride=factor`` and ``padding=factor // 2`` (:func:`bilinear_upsample_transposed`)
    the output is exactly ``factor`` times larger and equals
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` away from the border
    (at the border the transposed convolution fades to zero where interpolate clamps).
    """
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    grid = torch.arange(size, dtype=torch.float32)
    line = 1 - (grid - center).abs() / factor
    kernel = line[:, None] * line[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def bilinear_upsample_transposed(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample by ``factor`` with a transposed convolution holding :func:`bilinear_kernel` (output = factor x input)."""
    weight = bilinear_kernel(x.shape[1], factor).to(x)
    return F.conv_transpose2d(x, weight, stride=factor, padding=factor // 2)


def bilinear_upsample(x: torch.Tensor, size: tuple[int, int] | None = None, factor: int | None = None) -> torch.Tensor:
    """Bilinear upsampling to ``size`` or by ``factor`` (``align_corners=False``, the torchvision convention)."""
    if (size is None) == (factor is None):
        raise ConvscopeError("give exactly one of size and factor")
    return F.interpolate(x, size=size, scale_factor=factor, mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad (N, C, H, W) at the bottom and right so that H and W are multiples of
    ``multiple`` (encoder-decoders that pool ``log2(multiple)`` times; crop the output back)."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
