"""Image priors: penalties to subtract from an objective, and operations applied between steps.

Penalties are :class:`~convscope.optimize.objectives.Objective` terms of the image itself
(positive values; subtract them): the α-norm (Simonyan et al. 2014 use α = 2;
Mahendran & Vedaldi 2015 use α = 6) and total variation (Mahendran & Vedaldi 2015).
Both are averaged over pixels and measured around mid-grey 0.5 (images here are in
[0, 1], not mean-subtracted 0–255 as in the papers, so the papers' weights do not carry
over as numbers).

Step operations (Yosinski et al. 2015) act on the pixels between optimizer steps:
Gaussian blur every k steps, and zeroing (setting to grey) pixels of small norm or small
contribution. They need the ``pixel`` parameterization, where the parameter *is* the image.
"""

from __future__ import annotations

__all__ = [
    "alpha_norm",
    "blur_every",
    "clip_small_contribution",
    "clip_small_norm",
    "gaussian_blur",
    "gaussian_kernel",
    "StepOperation",
    "total_variation",
]

from typing import Callable

import torch

from .. import filters
from .objectives import Objective

StepOperation = Callable[[torch.Tensor, int], None]


def alpha_norm(alpha: float = 6.0, centre: float = 0.5) -> Objective:
    """Mean over pixels of ‖x − centre‖_α^α (channels summed): the α-norm prior."""
    return Objective(
        lambda e: (e.image - centre).abs().pow(alpha).sum(dim=1).flatten(1).mean(dim=1), [], f"{alpha:g}-norm"
    )


def total_variation(beta: float = 2.0) -> Objective:
    """Mean over pixels of ((∂x)² + (∂y)²)^(β/2) (Mahendran & Vedaldi 2015; β = 2 as in their
    code: β = 1 leaves spikes)."""

    def fn(e):
        image = e.image
        dy = image[..., 1:, :-1] - image[..., :-1, :-1]
        dx = image[..., :-1, 1:] - image[..., :-1, :-1]
        return (dx.pow(2) + dy.pow(2)).sum(dim=1).clamp_min(1e-12).pow(beta / 2).flatten(1).mean(dim=1)

    return Objective(fn, [], f"TV^{beta:g}")


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ⌈3σ⌉."""
    return filters.gaussian_kernel(sigma, radius=max(1, int(3 * sigma + 0.5)), dtype=torch.float32)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflected borders, radius ⌈3σ⌉ (:func:`convscope.filters.gaussian_blur`)."""
    return filters.gaussian_blur(image, sigma, truncate=3.0)


def blur_every(every: int = 4, sigma: float = 0.5) -> StepOperation:
    """Blur the image with a Gaussian of ``sigma`` pixels every ``every`` steps (Yosinski et al. 2015)."""

    def operate(pixels: torch.Tensor, step: int) -> None:
        if (step + 1) % every == 0:
            pixels.copy_(gaussian_blur(pixels, sigma))

    return operate


def clip_small_norm(percentile: float = 10.0, centre: float = 0.5) -> StepOperation:
    """Set to grey the pixels whose colour norm ‖x − centre‖ is below the given percentile
    of the image (Yosinski et al. 2015's "clipping pixels with small norm")."""

    def operate(pixels: torch.Tensor, step: int) -> None:
        norm = (pixels - centre).norm(dim=1, keepdim=True)
        limit = torch.quantile(norm.flatten(1), percentile / 100, dim=1).view(-1, 1, 1, 1)
        pixels.copy_(torch.where(norm < limit, torch.full_like(pixels, centre), pixels))

    return operate


def clip_small_contribution(percentile: float = 10.0, centre: float = 0.5) -> StepOperation:
    """Set to grey the pixels whose contribution to the objective is below the given
    percentile (Yosinski et al. 2015): the contribution of a pixel is |Σ_c (x − centre)·∂f/∂x|,
    the linear estimate of how much the objective drops if the pixel turns grey. Uses the
    gradient of the step just taken (``pixels.grad`` holds minus it: the loop minimizes −f)."""

    def operate(pixels: torch.Tensor, step: int) -> None:
        if pixels.grad is None:
            return
        contribution = ((pixels - centre) * pixels.grad).sum(dim=1, keepdim=True).abs()
        limit = torch.quantile(contribution.flatten(1), percentile / 100, dim=1).view(-1, 1, 1, 1)
        pixels.copy_(torch.where(contribution < limit, torch.full_like(pixels, centre), pixels))

    return operate
