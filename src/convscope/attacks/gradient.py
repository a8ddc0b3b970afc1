"""Gradient attacks: FGSM (Goodfellow 2015), BIM (Kurakin 2017) and PGD in L∞/L2 (Madry 2018).

Plain batched functions ``(model, x, y, eps, ...) -> x_adv`` usable inside a training
loop. Conventions (those of torchattacks 3.5, which they reproduce exactly when
``random_start=False``): ``x`` and ``x_adv`` in [0, 1] (normalisation is inside the
model), ``eps`` and step sizes in pixel units, ``targeted=True`` means ``y`` holds the
target classes and the loss is negated, every iterate projected onto the eps-ball and
clipped to [0, 1]. The model runs inside :func:`convscope.frozen` (eval mode, weights not
requiring grad) and comes back as it was; pass ``eval_mode=False`` to keep the caller's
mode (e.g. attacking a model in train mode during adversarial training).

Deviation from torchattacks: the loss is summed over the batch rather than averaged, so
the gradient does not shrink with the batch size (the signs, hence the L∞ images, are
the same; L2 steps normalise the gradient, so they are the same too). ``loss_fn`` takes
any ``(logits, y) -> Tensor[N] | scalar`` (a BPDA/EOT wrapper passes its own), and
``model`` may be any callable ``x -> logits``.
"""

from __future__ import annotations

__all__ = ["bim", "fgsm", "input_gradient", "Model", "pgd", "warn_short_budget"]

import contextlib
import warnings
from typing import Callable

import torch

from ..checks import checks_images
from ..errors import ConvscopeError
from ..gradients import input_gradient
from ..hooks import frozen
from ._common import LossFn, check_eps, labels_for, loss_function, progress_bar
from .registry import ATTACKS

Model = Callable[[torch.Tensor], torch.Tensor]


def loss_gradient(model: Model, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, targeted: bool) -> torch.Tensor:
    """``d loss / d x`` (loss summed over the batch, negated when targeted; :func:`convscope.gradients.input_gradient`)."""
    return input_gradient(model, x, lambda logits: -loss_fn(logits, y) if targeted else loss_fn(logits, y))


def _freeze(model: Model, eval_mode: bool):
    """``frozen`` for modules; a plain callable (e.g. a model composed with a transform) is run as is."""
    return frozen(model, eval_mode=eval_mode) if isinstance(model, torch.nn.Module) else contextlib.nullcontext()


@checks_images
def fgsm(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    *,
    targeted: bool = False,
    loss_fn: str | LossFn = "ce",
    eval_mode: bool = True,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow 2015): ``clip(x + eps * sign(∇x loss), 0, 1)``.

    Args:
        model: classifier taking RGB in [0, 1] (N, 3, H, W) -> logits.
        x: images (N, 3, H, W) in [0, 1].
        y: true labels LongTensor[N] (the model's prediction when None), or the target
            classes when ``targeted``.
        eps: L∞ budget in pixel units (2/255 is Goodfellow's 0.007).
        targeted: step down the loss of ``y`` instead of up.
        loss_fn: ``"ce"`` (default), ``"margin"``, ``"confidence"`` or a callable.
        eval_mode: run the model in eval mode (restored afterwards).

    Returns:
        x_adv (N, 3, H, W) in [0, 1], detached.

    >>> x_adv = fgsm(model, x, eps=2/255)
    """
    eps = check_eps(eps)
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)
        grad = loss_gradient(model, x, y, loss_function(loss_fn), targeted)
    return (x.detach() + eps * grad.sign()).clamp(0, 1)


@checks_images
def pgd(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    alpha: float | None = None,
    steps: int = 10,
    random_start: bool = True,
    norm: str = "inf",
    *,
    targeted: bool = False,
    restarts: int = 1,
    loss_fn: str | LossFn = "ce",
    generator: torch.Generator | None = None,
    eval_mode: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Projected gradient descent (Madry 2018) in L∞ or L2, with random start and restarts.

    L∞: ``x' += alpha * sign(g)``; L2: ``x' += alpha * g / ||g||``; then projection onto the
    eps-ball around ``x`` and clipping to [0, 1]. Random start as torchattacks: uniform in
    the L∞ ball, or a uniformly scaled Gaussian direction in the L2 ball. With
    ``restarts > 1`` each image keeps the first restart that fools the model (one extra
    forward per restart); ``restarts=1`` costs exactly ``steps`` forward+backward passes.

    Args:
        model, x, y, targeted, loss_fn, eval_mode: as :func:`fgsm`.
        eps: radius of the ball (pixel units; L2 radius over the whole image for ``norm="2"``).
        alpha: step size (default ``2.5 * eps / steps``, Madry's rule: the walk can cross the
            ball and come back); a budget with ``steps * alpha < eps`` cannot reach the
            ball's edge from ``x`` and warns. steps: iterations; norm: ``"inf"`` or ``"2"``.
        random_start: start at a random point of the ball (else at ``x``).
        restarts: independent runs; generator: source of the random starts (reproducible).
        progress: show a progress bar (Ctrl-C stops early and returns the current images).

    Returns:
        x_adv (N, 3, H, W) in [0, 1], detached.

    >>> x_adv = pgd(model, x, torch.tensor([340]), eps=4/255, steps=20, targeted=True)
    """
    norm = str(norm).lower().replace("l", "")
    if norm not in ("inf", "2"):
        raise ConvscopeError(f"norm must be 'inf' or '2', got {norm!r}")
    if steps < 0 or restarts < 1:
        raise ConvscopeError("steps must be >= 0 and restarts >= 1")
    eps = check_eps(eps)
    alpha = check_eps(2.5 * eps / max(steps, 1) if alpha is None else alpha, "alpha")
    warn_short_budget("pgd", eps, alpha, steps)
    loss = loss_function(loss_fn)
    x = x.detach()
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)
        best = None
        with progress_bar(steps * restarts, f"pgd-l{norm}", progress) as advance:
            for _ in range(restarts):
                adv = _random_start(x, eps, norm, generator) if random_start else x.clone()
                for _ in range(steps):
                    adv = _step(x, adv, loss_gradient(model, adv, y, loss, targeted), eps, alpha, norm)
                    advance(1)
                best = _keep_fooling(model, best, adv, y, targeted) if restarts > 1 else adv
    return best if best is not None else adv


def warn_short_budget(name: str, eps: float, alpha: float, steps: int) -> None:
    """Warn when ``steps * alpha < eps``: the attack cannot reach the edge of its own ball."""
    if steps > 0 and steps * alpha < eps * (1 - 1e-6):
        warnings.warn(
            f"{name}: {steps} steps x alpha {alpha:.4g} = {steps * alpha:.4g} < eps {eps:.4g}; the attack "
            f"cannot reach the edge of the eps-ball (robust accuracy will be overestimated); use more steps "
            f"or alpha >= eps/steps (default 2.5*eps/steps)",
            RuntimeWarning,
            stacklevel=4,  # past pgd or bim and their image check
        )


@checks_images
def bim(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    alpha: float = 1 / 255,
    steps: int | None = None,
    **options,
) -> torch.Tensor:
    """Basic iterative method / iterative FGSM (Kurakin 2017): L∞ PGD from ``x`` (no random start).

    ``steps`` defaults to Kurakin's ``min(eps*255 + 4, 1.25 * eps*255)``. Other options as :func:`pgd`.
    """
    if steps is None:
        steps = int(min(eps * 255 + 4, 1.25 * eps * 255))
    return pgd(model, x, y, eps, alpha, steps, random_start=False, norm="inf", **options)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    if norm == "inf":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * (2 * eps) - eps
        return (x + noise).clamp(0, 1)
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    radius = torch.rand((x.shape[0], 1, 1, 1), generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return (x + direction * radius * eps).clamp(0, 1)


def _step(x: torch.Tensor, adv: torch.Tensor, grad: torch.Tensor, eps: float, alpha: float, norm: str) -> torch.Tensor:
    if norm == "inf":
        adv = adv + alpha * grad.sign()
        return (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    grad_norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10
    delta = adv + alpha * grad / grad_norm - x
    scale = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1)
    return (x + delta * scale).clamp(0, 1)


def _keep_fooling(
    model: Model, best: torch.Tensor | None, candidate: torch.Tensor, y: torch.Tensor, targeted: bool
) -> torch.Tensor:
    """Per image, keep ``best`` where it already fools the model, else take ``candidate``."""
    if best is None:
        return candidate
    with torch.no_grad():
        predicted = model(best).argmax(dim=-1)
    fooled = predicted == y if targeted else predicted != y
    return torch.where(fooled.view(-1, 1, 1, 1), best, candidate)


@ATTACKS.register("fgsm", norm="linf", eps=8 / 255, deterministic=True, interactive=True, wraps=(fgsm,))
def _fgsm_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return fgsm(model, x, goal, eps, targeted=target is not None, **options)


@ATTACKS.register(
    "bim",
    norm="linf",
    eps=8 / 255,
    deterministic=True,
    interactive=True,
    wraps=(bim, pgd),
    fixed=("random_start", "norm"),
    quick={"steps": 3},
)
def _bim_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return bim(model, x, goal, eps, targeted=target is not None, progress=progress, **options)


@ATTACKS.register("pgd", norm="linf", eps=8 / 255, interactive=True, wraps=(pgd,), quick={"steps": 3})
def _pgd_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return pgd(model, x, goal, eps, targeted=target is not None, generator=generator, progress=progress, **options)


@ATTACKS.register("pgd_l2", norm="l2", eps=1.0, wraps=(pgd,), fixed=("norm",), quick={"steps": 3})
def _pgd_l2_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return pgd(
        model, x, goal, eps, norm="2", targeted=target is not None, generator=generator, progress=progress, **options
    )
