"""CIFAR-style pre-activation residual networks, the architectures of the adversarial-training papers.

* :func:`resnet_cifar`: PreAct-ResNet (He et al. 2016, "Identity mappings in deep residual
  networks"): a 3x3 stem, four stages of pre-activation basic blocks of widths ``w, 2w, 4w, 8w``
  (strides 1, 2, 2, 2), then BN-ReLU, global average pooling and a linear layer. ``depth = 2 + 8·b``
  with ``b`` blocks per stage: ``depth=18, width=64`` is the PreActResNet-18 of Rice et al. 2020 and
  Wong et al. 2020.
* :func:`wide_resnet_cifar`: Wide ResNet (Zagoruyko & Komodakis 2016), three stages of widths
  ``16k, 32k, 64k`` (strides 1, 2, 2), ``depth = 4 + 6·b``: ``depth=34, widen=10`` is Madry et al.'s
  CIFAR-10 model (WRN-34-10), ``depth=28, widen=10`` the usual TRADES/RobustBench one.

Both take images of any size (the pooling is global) and no normalisation of their own.
"""

from __future__ import annotations

__all__ = ["PreActResNet", "resnet_cifar", "wide_resnet_cifar"]

import torch
from torch import nn

from ..errors import ConvscopeError


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut; a 1x1 convolution of the pre-activated input
    when the width or the resolution changes, else the identity (He et al. 2016, fig. 4e)."""

    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inputs)
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Conv2d(inputs, outputs, 1, stride, bias=False) if stride != 1 or inputs != outputs else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.conv2(self.relu2(self.bn2(self.conv1(activated)))) + shortcut


class PreActResNet(nn.Module):
    """A stem convolution, stages of :class:`PreActBlock` (the first block of a stage carries its
    stride), BN-ReLU, global average pooling, a linear classifier."""

    def __init__(self, stem: int, widths: tuple[int, ...], strides: tuple[int, ...], blocks: int, num_classes: int):
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        stages, inputs = [], stem
        for width, stride in zip(widths, strides):
            layers = [PreActBlock(inputs if i == 0 else width, width, stride if i == 0 else 1) for i in range(blocks)]
            stages.append(nn.Sequential(*layers))
            inputs = width
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(inputs)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inputs, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.relu(self.bn(self.stages(self.stem(x)))))
        return self.fc(torch.flatten(features, 1))


def resnet_cifar(num_classes: int = 10, depth: int = 18, width: int = 64) -> PreActResNet:
    """PreAct-ResNet-``depth`` with stage widths ``width·(1, 2, 4, 8)``; ``depth`` = 10, 18, 26, ...

    >>> network = resnet_cifar(10, depth=10, width=8)       # a tiny one for CPU runs
    """
    if depth < 10 or (depth - 2) % 8 or width < 1 or num_classes < 1:
        raise ConvscopeError(
            f"resnet_cifar needs depth = 2 + 8·b (10, 18, 26, ...) and width >= 1, got {depth}, {width}"
        )
    return PreActResNet(width, tuple(width * m for m in (1, 2, 4, 8)), (1, 2, 2, 2), (depth - 2) // 8, num_classes)


def wide_resnet_cifar(num_classes: int = 10, depth: int = 34, widen: int = 10) -> PreActResNet:
    """WRN-``depth``-``widen`` (Zagoruyko & Komodakis 2016): stage widths ``16·widen·(1, 2, 4)``,
    ``depth`` = 10, 16, 22, 28, 34, ...; no dropout (as in the adversarial-training papers)."""
    if depth < 10 or (depth - 4) % 6 or widen < 1 or num_classes < 1:
        raise ConvscopeError(
            f"wide_resnet_cifar needs depth = 4 + 6·b (10, 16, ..., 28, 34) and widen >= 1, got {depth}, {widen}"
        )
    return PreActResNet(16, tuple(16 * widen * m for m in (1, 2, 4)), (1, 2, 2), (depth - 4) // 6, num_classes)
