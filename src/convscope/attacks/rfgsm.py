"""R+FGSM (Tramèr et al. 2018, "Ensemble Adversarial Training", section 4.1): FGSM from a random start.

``x' = x + α·sign(N(0, I))`` (a random corner step that escapes the sharp curvature of the loss
at the data point), then one FGSM step of the remaining budget from there:
``x_adv = clip(x' + (ε − α)·sign(∇x' J(x', y)), 0, 1)``, so ``‖x_adv − x‖∞ ≤ ε``. The paper uses
``α = ε/2`` (the default). Same conventions as :mod:`convscope.attacks.gradient` (pixel units,
summed loss, ``targeted`` steps down the target's loss); the random step is drawn from
``generator``. Equals torchattacks' ``RFGSM(eps, alpha=eps/2, steps=1)`` with the same draw.
"""

from __future__ import annotations

__all__ = ["rfgsm"]

import torch

from ..checks import checks_images
from ..errors import ConvscopeError
from ._common import LossFn, check_eps, labels_for
from .gradient import Model, _freeze, fgsm
from .registry import ATTACKS


@checks_images
def rfgsm(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    alpha: float | None = None,
    *,
    targeted: bool = False,
    loss_fn: str | LossFn = "ce",
    generator: torch.Generator | None = None,
    eval_mode: bool = True,
) -> torch.Tensor:
    """R+FGSM adversarial examples of ``x`` (see the module notes).

    Args:
        eps: L∞ budget in pixel units.
        alpha: the random step, ``0 <= alpha < eps`` (default ``eps / 2``, the paper's).
        generator: draws the random signs (reproducible with :func:`convscope.attack`'s ``seed``).
        Other arguments as :func:`~convscope.attacks.gradient.fgsm`.

    >>> x_adv = rfgsm(model, x, eps=8/255)
    """
    eps = check_eps(eps)
    alpha = eps / 2 if alpha is None else float(alpha)
    if not 0 <= alpha < eps:
        raise ConvscopeError(f"alpha must be in [0, eps) = [0, {eps:.4g}), got {alpha}")
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)  # the labels of the clean images, not of the random start
    signs = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype).sign()
    start = (x.detach() + alpha * signs).clamp(0, 1)
    return fgsm(model, start, y, eps - alpha, targeted=targeted, loss_fn=loss_fn, eval_mode=eval_mode)


@ATTACKS.register("rfgsm", norm="linf", eps=8 / 255, wraps=(rfgsm,))
def _rfgsm_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return rfgsm(model, x, goal, eps, targeted=target is not None, generator=generator, **options)
