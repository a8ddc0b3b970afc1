"""Expectation over Transformation (Athalye et al. 2018): perturbations that survive the physical world.

PGD where each step's gradient is averaged over ``samples`` random draws of a
print-and-photograph simulation (:class:`PhysicalTransform`): rotation, scale,
translation, brightness/contrast, Gaussian blur, sensor noise and JPEG. JPEG is not
differentiable; it is applied in the forward pass with a straight-through (identity)
backward, i.e. BPDA (Athalye, Carlini & Wagner 2018). Success is measured with
:func:`transform_success` on fresh transforms never used in the optimisation.

The attack is :func:`convscope.attacks.gradient.pgd` on the model composed with the
random transform (a plain callable) and an averaging ``loss_fn``: the composition the
gradient functions were built for.
"""

from __future__ import annotations

__all__ = ["eot", "PhysicalTransform", "transform_success"]

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..checks import checks_images
from ..filters import gaussian_blur
from ..hooks import frozen
from ._common import check_eps, labels_for
from .gradient import pgd
from .registry import ATTACKS


@dataclass
class PhysicalTransform:
    """A random print-and-photograph simulation, differentiable (JPEG through BPDA).

    Each image gets its own draw: rotation in ±``rotation`` degrees, scale in ``scale``,
    shift up to ``translate`` of the size, brightness ``+U(±brightness)``, contrast
    ``×U(contrast)``, Gaussian blur σ ∈ U(``blur``), noise σ ``noise``, JPEG quality in
    ``jpeg`` (None disables JPEG).
    """

    rotation: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.2)
    blur: tuple[float, float] = (0.0, 1.0)
    noise: float = 0.02
    jpeg: tuple[int, int] | None = (60, 95)
    generator: torch.Generator | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        count = x.shape[0]

        def uniform(low, high):
            return low + (high - low) * torch.rand(count, generator=self.generator, device=x.device, dtype=x.dtype)

        angle = uniform(-self.rotation, self.rotation) * math.pi / 180
        zoom = uniform(*self.scale)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos, -sin, uniform(-self.translate, self.translate) * 2], 1),
                torch.stack([sin, cos, uniform(-self.translate, self.translate) * 2], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out = _blur(out, uniform(*self.blur))
        out = (
            (out - 0.5) * uniform(*self.contrast).view(-1, 1, 1, 1)
            + 0.5
            + uniform(-self.brightness, self.brightness).view(-1, 1, 1, 1)
        )
        noise = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype) * self.noise
        out = (out + noise).clamp(0, 1)
        if self.jpeg is not None:
            qualities = torch.randint(
                self.jpeg[0], self.jpeg[1] + 1, (count,), generator=self.generator, device=x.device
            ).tolist()
            out = _StraightThroughJPEG.apply(out, qualities)
        return out


def _blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur with a per-image σ (σ = 0 leaves the image as it is)."""
    return gaussian_blur(x, sigma, radius=radius)


class _StraightThroughJPEG(torch.autograd.Function):
    """JPEG round trip (PIL) forward, identity backward (BPDA)."""

    @staticmethod
    def forward(ctx, x, qualities):
        out = torch.empty_like(x)
        for i, quality in enumerate(qualities):
            array = (x[i].detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
            decoded = torch.from_numpy(np.array(Image.open(buffer).convert("RGB")))
            out[i] = decoded.permute(2, 0, 1).to(x.device, x.dtype) / 255
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None


@checks_images
def eot(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 16 / 255,
    *,
    alpha: float = 2 / 255,
    steps: int = 20,
    samples: int = 8,
    targeted: bool = False,
    transform: PhysicalTransform | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """L∞ PGD on the expected loss over ``samples`` random transforms per step.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, 3, H, W) in [0, 1].
        y: true labels (the prediction when None), or target classes when ``targeted``.
        eps, alpha, steps: as :func:`~convscope.attacks.gradient.pgd` (no random start).
        samples: transforms averaged per step (cost: ``steps × samples`` forward+backward per image).
        transform: the distribution (default :class:`PhysicalTransform` drawing from ``generator``).

    Returns:
        x_adv (N, 3, H, W) in [0, 1].

    >>> x_adv = eot(model, x, torch.tensor([340]), eps=16/255, targeted=True)
    """
    eps = check_eps(eps)
    transform = transform or PhysicalTransform(generator=generator)
    with frozen(model):
        y = labels_for(model, x, y)

        def transformed(images):
            return model(transform(images.repeat(samples, 1, 1, 1)))

        def expected_loss(logits, labels):
            return F.cross_entropy(logits, labels.repeat(samples), reduction="sum") / samples

        return pgd(
            transformed,
            x,
            y,
            eps,
            alpha,
            steps,
            random_start=False,
            targeted=targeted,
            loss_fn=expected_loss,
            progress=progress,
        )


@checks_images
def transform_success(
    model: torch.nn.Module,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None = None,
    transform: PhysicalTransform | None = None,
    trials: int = 32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per image, the fraction of ``trials`` fresh random transforms under which the attack holds.

    Holds = prediction != ``y`` (untargeted) or == ``target``. Use a generator (or a
    transform) different from the one of the optimisation so the draws are unseen.
    """
    transform = transform or PhysicalTransform(generator=generator)
    wins = torch.zeros(x_adv.shape[0], device=x_adv.device)
    with frozen(model), torch.no_grad():
        for _ in range(trials):
            predicted = model(transform(x_adv)).argmax(dim=-1)
            wins += (predicted == target) if target is not None else (predicted != y)
    return wins / trials


@ATTACKS.register("eot", norm="linf", eps=16 / 255, wraps=(eot,), quick={"steps": 3, "samples": 2})
def _eot_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return eot(model, x, goal, eps, targeted=target is not None, generator=generator, progress=progress, **options)
