"""Integrated gradients (Sundararajan, Taly & Yan 2017).

``IG_i(x) = (x_i - b_i) * integral_0^1 d score(b + a (x - b)) / d x_i  da``, approximated by a
quadrature over ``steps`` points. Conventions (captum's, so the two agree to float
tolerance with the same ``steps`` and ``rule``):

* ``rule="gausslegendre"`` (default, captum's default): a = (1 + nodes) / 2 and weights / 2
  of numpy's Gauss-Legendre rule; ``rule="riemann_trapezoid"``: a = linspace(0, 1, steps)
  with weights 1/(steps - 1), halved at both ends (they sum to 1; captum uses 1/steps, so
  its weights sum to (steps - 1)/steps and its trapezoid attributions are that much smaller);
* the score is the class logit (``objective`` as in saliency);
* the interpolated images are evaluated ``batch_size`` at a time (captum puts all
  N x steps images into one pass by default, which runs out of memory).

Baselines: ``"black"`` (zeros, the paper's and captum's default), ``"blur"`` (the image
blurred with a Gaussian of ``blur_sigma`` pixels), ``"uniform"`` (uniform noise in [0, 1],
seeded by ``seed``), or a tensor broadcastable to ``x``.
"""

from __future__ import annotations

__all__ = ["integrated_gradients", "make_baseline", "quadrature", "RULES"]

import numpy as np
import torch

from ..errors import ConvscopeError
from ..filters import gaussian_blur
from .gradients import target_gradient, objective_score, reduce_channels
from .noise import fixed_targets
from .registry import METHODS

RULES = ("gausslegendre", "riemann_trapezoid")


def quadrature(steps: int, rule: str = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``alpha`` in [0, 1] and weights (summing to 1) of the path integral."""
    if steps < 2 and rule == "riemann_trapezoid" or steps < 1:
        raise ConvscopeError(f"integrated gradients needs more steps, got {steps}")
    if rule == "gausslegendre":
        nodes, node_weights = np.polynomial.legendre.leggauss(steps)
        return torch.tensor(0.5 * (nodes + 1)), torch.tensor(0.5 * node_weights)
    if rule == "riemann_trapezoid":
        alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return alphas, weights
    raise ConvscopeError(f"unknown integration rule {rule!r}; known: {', '.join(RULES)}")


def make_baseline(x: torch.Tensor, baseline, blur_sigma: float = 10.0, seed: int | None = None) -> torch.Tensor:
    """The baseline image(s) for ``x``: ``"black"``, ``"blur"``, ``"uniform"`` or a tensor."""
    if isinstance(baseline, torch.Tensor):
        try:
            return torch.broadcast_to(baseline.to(x.device, x.dtype), x.shape)
        except RuntimeError:
            raise ConvscopeError(f"baseline of shape {tuple(baseline.shape)} does not fit x {tuple(x.shape)}") from None
    if baseline == "black":
        return torch.zeros_like(x)
    if baseline == "blur":
        return gaussian_blur(x, blur_sigma, radius=int(3 * blur_sigma))
    if baseline == "uniform":
        generator = torch.Generator(device=x.device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    raise ConvscopeError(f"baseline must be 'black', 'blur', 'uniform' or a tensor, got {baseline!r}")


@METHODS.register(kind="path", quick={"steps": 16})
def integrated_gradients(
    model,
    x,
    target=None,
    baseline="black",
    steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int = 32,
    channels: str | None = None,
    objective: str = "logit",
    blur_sigma: float = 10.0,
    seed: int | None = None,
    return_gap: bool = False,
):
    """Integrated gradients along the straight path from ``baseline`` to ``x``.

    Args:
        baseline: ``"black"``, ``"blur"``, ``"uniform"`` or a tensor (see the module docstring).
        steps: quadrature points (captum's default is 50).
        rule: ``"gausslegendre"`` or ``"riemann_trapezoid"``.
        batch_size: interpolated images per forward/backward pass (bounded memory).
        channels: ``None`` (per channel, default), ``"sum"`` or ``"max"``.
        return_gap: also return the completeness gap ``sum(IG) - (f(x) - f(baseline))``
            per image (captum's ``delta``); it shrinks as ``steps`` grows.

    Returns:
        (N, 3, H, W) (or (N, 1, H, W) reduced), and the gap ``Tensor[N]`` with ``return_gap``.
    """
    ids = fixed_targets(model, x, target)
    reference = make_baseline(x, baseline, blur_sigma, seed)
    alphas, weights = quadrature(steps, rule)
    alphas, weights = alphas.to(x.device, x.dtype), weights.to(x.device, x.dtype)
    total = torch.zeros_like(x)
    per_pass = max(1, batch_size)
    for index in range(x.shape[0]):
        image, start_image = x[index : index + 1], reference[index : index + 1]
        target_here = ids[index : index + 1] if isinstance(ids, torch.Tensor) else ids
        for start in range(0, steps, per_pass):
            a = alphas[start : start + per_pass].view(-1, 1, 1, 1)
            path = start_image + a * (image - start_image)
            targets = target_here.expand(path.shape[0]) if isinstance(ids, torch.Tensor) else ids
            grads = target_gradient(model, path, targets, objective)
            total[index] += (grads * weights[start : start + per_pass].view(-1, 1, 1, 1)).sum(dim=0)
    attribution = (x - reference) * total
    if not return_gap:
        return reduce_channels(attribution, channels)
    with torch.no_grad():
        change = objective_score(model, x, ids, objective) - objective_score(model, reference, ids, objective)
    gap = attribution.sum(dim=(1, 2, 3)) - change
    return reduce_channels(attribution, channels), gap
