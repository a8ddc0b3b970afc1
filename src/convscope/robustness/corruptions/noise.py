"""Noise corruptions: gaussian, shot, impulse and speckle noise."""

from __future__ import annotations

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]

import torch

from ._filters import _normal
from .registry import CORRUPTIONS


@CORRUPTIONS.register(category="noise")
def gaussian_noise(x, severity, generator):
    """Additive Gaussian noise, sigma .08 .12 .18 .26 .38."""
    scale = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]
    return x + _normal(x.shape, 0.0, scale, generator, x.device)


@CORRUPTIONS.register(category="noise")
def shot_noise(x, severity, generator):
    """Poisson noise, ``poisson(x * lam) / lam`` with lam 60 25 12 5 3."""
    rate = [60, 25, 12, 5, 3][severity - 1]
    return torch.poisson(x * rate, generator=generator) / rate


@CORRUPTIONS.register(category="noise")
def impulse_noise(x, severity, generator):
    """Salt-and-pepper noise on a fraction .03 .06 .09 .17 .27 of the values (skimage 's&p')."""
    amount = [0.03, 0.06, 0.09, 0.17, 0.27][severity - 1]
    flipped = torch.rand(x.shape, generator=generator, device=x.device) < amount
    salted = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    return torch.where(flipped, salted.to(x), x)


@CORRUPTIONS.register(category="noise")
def speckle_noise(x, severity, generator):
    """Multiplicative Gaussian noise ``x + x * n``, sigma .15 .2 .35 .45 .6."""
    scale = [0.15, 0.2, 0.35, 0.45, 0.6][severity - 1]
    return x + x * _normal(x.shape, 0.0, scale, generator, x.device)


# ----------------------------------------------------------------------------- blur
