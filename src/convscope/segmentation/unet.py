"""A small U-Net (Ronneberger, Fischer & Brox 2015): encoder-decoder with copied skip features.

Each encoder level is two 3x3 conv + BatchNorm + ReLU and a 2x2 max-pool; each decoder
level upsamples with a learned 2x2 stride-2 transposed convolution, concatenates the
encoder features of the same level (the copied "skip" features) and applies two 3x3 convs.

Deviations from the paper: padded ("same") convolutions, so the output has the input's
size and no cropping of skip features is needed; BatchNorm after each conv; channel widths
``width * 2**level`` (the paper: 64 .. 1024). Inputs whose sides are not multiples of
``2**depth`` are reflect-padded and the output cropped back.
"""

from __future__ import annotations

__all__ = ["UNet"]

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import pad_to_multiple


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: (N, in_channels, H, W) in [0, 1] -> (N, num_classes, H, W) pixel scores.

    Args:
        num_classes: segmentation classes (background included).
        width: channels of the first level (doubles at each level down).
        depth: number of poolings.

    >>> UNet(4, width=16, depth=3)(torch.rand(2, 3, 96, 96)).shape
    torch.Size([2, 4, 96, 96])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.depth = depth
        widths = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            [_double_conv(c_in, c_out) for c_in, c_out in zip([in_channels] + widths[:-2], widths[:-1])]
        )
        self.bottom = _double_conv(widths[-2], widths[-1])
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2) for level in reversed(range(depth))]
        )
        self.merge = nn.ModuleList([_double_conv(2 * widths[level], widths[level]) for level in reversed(range(depth))])
        self.classify = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, 2**self.depth)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return self.classify(x)[..., :height, :width]
