"""A small SegNet (Badrinarayanan, Kendall & Cipolla 2017): an encoder-decoder whose decoder
upsamples with the encoder's max-pooling *indices*.

Each encoder level is two 3x3 conv + BatchNorm + ReLU and a 2x2 max-pool that remembers where
each maximum came from (:func:`~convscope.segmentation.blocks.max_pool_with_indices`); each
decoder level puts its features back at those positions (:func:`~convscope.segmentation.blocks.max_unpool`,
zeros elsewhere: no learned upsampling, no copied features — the memory-cheap alternative to
U-Net's skips) and densifies them with two 3x3 convs.

Deviations from the paper: 3 levels of width ``width * 2**level`` instead of VGG-16's 5
(64 .. 512) without ImageNet initialisation; inputs whose sides are not multiples of
``2**depth`` are reflect-padded and the output cropped back.
"""

from __future__ import annotations

__all__ = ["SegNet"]

import torch
from torch import nn

from .blocks import max_pool_with_indices, max_unpool, pad_to_multiple
from .unet import _double_conv


class SegNet(nn.Module):
    """SegNet: (N, in_channels, H, W) in [0, 1] -> (N, num_classes, H, W) pixel scores.

    >>> SegNet(4, width=16, depth=3)(torch.rand(2, 3, 96, 96)).shape
    torch.Size([2, 4, 96, 96])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 3):
        super().__init__()
        self.num_classes, self.depth = num_classes, depth
        widths = [width * 2**level for level in range(depth)]
        self.encode = nn.ModuleList(
            [_double_conv(c_in, c_out) for c_in, c_out in zip([in_channels] + widths[:-1], widths)]
        )
        # decoder level i undoes encoder level i: from widths[i] channels back to widths[i - 1]
        self.decode = nn.ModuleList(
            [_double_conv(widths[level], widths[max(level - 1, 0)]) for level in reversed(range(depth))]
        )
        self.classify = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, 2**self.depth)
        remembered = []
        for block in self.encode:
            x = block(x)
            size = tuple(x.shape[-2:])
            x, indices = max_pool_with_indices(x)
            remembered.append((indices, size))
        for block, (indices, size) in zip(self.decode, reversed(remembered)):
            x = block(max_unpool(x, indices, output_size=size))
        return self.classify(x)[..., :height, :width]
