"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks"), L∞ and L2, with the cross-entropy or the DLR loss.

Written from the paper's Algorithm 1 and Sec. 3:

* ``N_iter`` iterations; checkpoints ``w_j = ceil(p_j N_iter)`` with ``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``.
* step size ``η = 2ε`` at the start; first step a plain projected gradient step, then the
  momentum step ``x ← P(x + α(z − x) + (1 − α)(x − x_prev))`` with ``z = P(x + η·step(∇))``, α = 0.75.
* at every checkpoint, per image: halve ``η`` if (1) fewer than ρ = 0.75 of the steps since the last
  checkpoint raised the loss, or (2) neither ``η`` nor the best loss changed since the last
  checkpoint; when halved, restart from the best point found so far.
* DLR loss ``-(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)``; targeted DLR
  ``-(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)`` (π: logits sorted decreasingly).
* APGD-T (:func:`apgd_targeted`): targeted DLR towards each of the ``top`` most likely wrong
  classes in turn (9 in AutoAttack, fewer when the model has fewer classes), each only on the
  images still robust.

Every image has its own step size and checkpoint decisions (the batch is a set of independent
runs). Restarts start at a uniform random point of the ball (L∞) or a random direction of norm ε
(L2), as the reference implementation; ``restarts > 1`` re-runs only images not yet fooled.
The returned image is, per image, the last point visited that fooled the model (the reference's
``x_best_adv``; success is "misclassified" for the untargeted loss and for APGD-T, as in AutoAttack;
"predicted as the target" when a target is given), else the point of highest loss. Cost per restart:
``N_iter`` forward+backward passes (the start point and every step but the last) and one forward
pass (the last point), plus a few tensor operations per step that never wait for the device.
Deviation: the L2 projection onto ball ∩ box is "scale into the ball, then clip", as the reference.
"""

from __future__ import annotations

__all__ = ["apgd", "apgd_targeted", "checkpoints", "dlr_loss", "dlr_targeted_loss", "MOMENTUM", "RHO", "target_classes"]

import math

import torch
import torch.nn.functional as F

from ..checks import checks_images
from ..errors import ConvscopeError
from ._common import check_eps, cross_entropy, labels_for, progress_bar
from .gradient import _freeze
from .registry import ATTACKS

RHO = 0.75
MOMENTUM = 0.75


def checkpoints(n_iter: int) -> list[int]:
    """The paper's checkpoints ``w_j = ceil(p_j · n_iter)`` (strictly increasing, < n_iter)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    points = sorted({math.ceil(q * n_iter - 1e-9) for q in p[1:] if q <= 1 + 1e-9})  # 1e-9: float sums (0.57)
    return [w for w in points if 0 < w < n_iter]


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image Difference of Logits Ratio (Croce & Hein 2020, eq. 5), larger = closer to fooled.

    ``-(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)``; needs at least 3 classes.
    """
    if logits.shape[-1] < 3:
        raise ConvscopeError("the DLR loss needs at least 3 classes")
    ordered = logits.sort(dim=-1, descending=True).values
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[-1]).bool(), float("-inf")).amax(dim=-1)
    return -(true - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image targeted DLR (Croce & Hein 2020, eq. 6): ``-(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)``."""
    if logits.shape[-1] < 4:
        raise ConvscopeError("the targeted DLR loss needs at least 4 classes")
    ordered = logits.sort(dim=-1, descending=True).values
    true = logits.gather(1, y[:, None])[:, 0]
    goal = logits.gather(1, target[:, None])[:, 0]
    return -(true - goal) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


def _norm(norm: str) -> str:
    norm = str(norm).lower().replace("l", "")
    if norm not in ("inf", "2"):
        raise ConvscopeError(f"norm must be 'inf' or '2', got {norm!r}")
    return norm


def _project(x: torch.Tensor, point: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    delta = point - x
    if norm == "inf":
        delta = delta.clamp(-eps, eps)
    else:
        length = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta * (eps / length).clamp(max=1.0)
    return (x + delta).clamp(0, 1)


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "inf":
        return grad.sign()
    return grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)


def _start(x: torch.Tensor, eps: float, norm: str, generator) -> torch.Tensor:
    if norm == "inf":
        noise = (2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1) * eps
        return (x + noise).clamp(0, 1)
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (x + eps * direction).clamp(0, 1)


def _projection(x: torch.Tensor, eps: float, norm: str):
    """``P``: the projection onto the eps-ball around ``x`` intersected with [0, 1]; it may overwrite its
    argument. For L∞ that is one in-place clamp between bounds computed once (``max(x − ε, 0)``,
    ``min(x + ε, 1)``)."""
    if norm != "inf":
        return lambda point: _project(x, point, eps, norm)
    low, high = (x - eps).clamp_(min=0), (x + eps).clamp_(max=1)
    return lambda point: point.clamp_(low, high)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bool[N] -> the lerp weight of :func:`_select`: 0/1 in ``like``'s dtype, shaped (N, 1, ..., 1)."""
    return mask.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def _select(destination: torch.Tensor, source: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``destination[rows] = source[rows]`` in place, without reading ``rows`` on the host (``rows``: the
    weight from :func:`_rows`): ``lerp_`` with a weight of 0 or 1 per image, which is exact (lerp
    returns its start at 0 and its end at 1) and on CPU 4 × faster than a broadcast ``torch.where``
    (16 µs against 68 µs on 120 × 3 × 16 × 16)."""
    return destination.lerp_(source, rows)


def _run(model, x, y, target, eps, norm, n_iter, loss_name, generator, advance, hit_target, eot=1):
    """One APGD run on a batch: returns (adversarial or best-loss point, fooled Bool[N]).

    Cost: ``n_iter`` forward+backward passes (the start and every step but the last) and one forward
    pass (the last point's gradient is never used), times ``eot``. Outside the model, a step is a few
    tensor operations on the batch and none reads a value back to the host (a GPU never waits; one
    read per checkpoint skips the restart when no image halves its step): the
    L∞ step (sign, multiply-add, three in-place momentum terms, two in-place clamps), the success test
    (argmax, compare) and the records, each one in-place :func:`_select` (last fooling point, best
    point, its gradient) or ``torch.where`` on the per-image losses. The losses since the last checkpoint are kept in a Python list;
    the oscillation count and the step-size decisions are computed only at checkpoints."""
    n = x.shape[0]
    view = (-1, 1, 1, 1)
    project = _projection(x, eps, norm)
    ones = torch.ones(n, device=x.device, dtype=x.dtype)  # d(sum of per-image losses)/d(loss)

    def per_image_loss(logits):
        if loss_name == "ce":
            return cross_entropy(logits, y) if target is None else -cross_entropy(logits, target)
        return dlr_loss(logits, y) if target is None else dlr_targeted_loss(logits, y, target)

    def evaluate(point, with_gradient=True):
        point = point.detach().requires_grad_(with_gradient)
        loss, grad, scores = None, None, None
        for _ in range(eot):  # EOT (AutoAttack "rand"): mean loss and gradient over draws of a random model
            with torch.set_grad_enabled(with_gradient):
                logits = model(point)
                draw = per_image_loss(logits)
            draw_grad = torch.autograd.grad(draw, point, ones)[0] if with_gradient else None
            loss = draw.detach() if loss is None else loss.add_(draw.detach())
            if with_gradient:
                grad = draw_grad if grad is None else grad.add_(draw_grad)
            # the decision of a random model is that of its mean probabilities over the draws
            draw_scores = logits if eot == 1 else logits.detach().softmax(-1)
            scores = draw_scores if scores is None else scores.add_(draw_scores)
        if eot > 1:
            loss = loss.div_(eot)
            grad = grad.div_(eot) if grad is not None else None
        predicted = scores.argmax(-1)
        fooled = predicted == target if hit_target else predicted != y
        advance(1)
        return loss, grad, fooled

    current = _start(x, eps, norm, generator)
    loss, grad, fooled = evaluate(current)
    adversarial = torch.where(fooled.view(view), current, x)
    ever = fooled.clone()
    best, best_loss, best_grad, best_fooled = current.clone(), loss.clone(), grad.clone(), fooled.clone()
    eta = torch.full((n,), 2.0 * eps, device=x.device, dtype=x.dtype)
    step = eta.view(view)
    marks = set(checkpoints(n_iter))
    previous_mark = 0
    losses = [loss]  # the loss at the last checkpoint and at every step since
    eta_at_mark, best_at_mark = eta.clone(), best_loss.clone()
    previous = current
    for k in range(n_iter):
        new = project(torch.addcmul(current, step, _direction(grad, norm)))
        if k > 0:
            # x + α(z − x) + (1 − α)(x − x_prev) = α z + 2(1 − α) x − (1 − α) x_prev
            new = project(new.mul_(MOMENTUM).add_(current, alpha=2 * (1 - MOMENTUM)).sub_(previous, alpha=1 - MOMENTUM))
        previous, current = current, new
        loss, grad, fooled = evaluate(current, with_gradient=k + 1 < n_iter)
        losses.append(loss)
        _select(adversarial, current, _rows(fooled, current))
        ever |= fooled
        improved = loss > best_loss
        weight = _rows(improved, current)
        _select(best, current, weight)
        if grad is not None:
            _select(best_grad, grad, weight)
        torch.where(improved, loss, best_loss, out=best_loss)
        if eot > 1:
            torch.where(improved, fooled, best_fooled, out=best_fooled)
        if k + 1 in marks:
            history = torch.stack(losses)
            condition1 = (history[1:] > history[:-1]).sum(0) < RHO * (k + 1 - previous_mark)
            condition2 = (eta_at_mark == eta) & (best_at_mark == best_loss)
            halve = condition1 | condition2
            if halve.any():  # the one host read, at checkpoints only (8 in 100 steps)
                eta = torch.where(halve, eta / 2, eta)
                step = eta.view(view)
                # restart the halved images from their best point (and its gradient)
                weight = _rows(halve, current)
                for state, restart in ((current, best), (grad, best_grad), (previous, best)):
                    _select(state, restart, weight)
            previous_mark, losses = k + 1, [loss]
            eta_at_mark, best_at_mark = eta, best_loss.clone()  # eta is replaced, never changed in place
    if eot > 1:  # a random model: the point that fooled the mean of the draws sits on the boundary,
        return best, best_fooled  # where fresh draws undo it half the time; the point of highest mean loss does not
    return torch.where(ever.view(view), adversarial, best), ever


@checks_images
def apgd(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    *,
    norm: str = "inf",
    steps: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    eval_mode: bool = True,
    progress: bool = False,
    hit_target: bool = True,
    eot: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """APGD (Croce & Hein 2020) on a batch.

    Args:
        model: classifier taking images in [0, 1] -> logits; x: (N, C, H, W) in [0, 1].
        y: true labels (the prediction when None).
        eps: radius in pixel units; norm: ``"inf"`` or ``"2"``.
        steps: N_iter (100 in AutoAttack); restarts: random restarts (each on still-robust images).
        loss: ``"ce"`` or ``"dlr"`` (with ``target``: targeted DLR, or targeted CE for ``"ce"``).
        target: LongTensor[N] target classes (None: untargeted).
        generator: source of the random starts.
        hit_target: with a target, success means "predicted as the target" (else: misclassified,
            AutoAttack's criterion for APGD-T).
        eot: gradient draws averaged per step (Athalye 2018's EOT, for randomised models; 20 in
            AutoAttack "rand"); each step then costs ``eot`` forward+backward passes, and an image
            counts as fooled when the mean of its ``eot`` softmax outputs is (a single draw that
            happens to misclassify is not a success: torchattacks' port of the reference counts it,
            and then reports images as broken that the defense classifies correctly on most draws).
            With ``eot > 1`` the returned image is the point of highest mean loss, not the first
            that fooled (that one lies on the decision boundary, and fresh draws undo it).

    Returns:
        ``(x_adv, fooled)``: the images and Bool[N] success.

    >>> x_adv, fooled = apgd(model, x, y, eps=8/255, loss="dlr")
    """
    eps, norm = check_eps(eps), _norm(norm)
    if loss not in ("ce", "dlr"):
        raise ConvscopeError(f"APGD loss must be 'ce' or 'dlr', got {loss!r}")
    if steps < 1 or restarts < 1 or eot < 1:
        raise ConvscopeError("APGD needs steps >= 1, restarts >= 1 and eot >= 1")
    x = x.detach()
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)
        out = x.clone()
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        with progress_bar((steps + 1) * restarts, f"apgd-{loss}", progress) as advance:
            for _ in range(restarts):
                todo = (~fooled).nonzero()[:, 0]
                if todo.numel() == 0:
                    break
                sub_target = target[todo] if target is not None else None
                adv, ok = _run(
                    model,
                    x[todo],
                    y[todo],
                    sub_target,
                    eps,
                    norm,
                    steps,
                    loss,
                    generator,
                    advance,
                    hit_target and target is not None,
                    eot,
                )
                out[todo] = adv
                fooled[todo] = ok
    return out, fooled


def target_classes(logits: torch.Tensor, top: int = 9) -> torch.Tensor:
    """LongTensor[N, k]: the ``k = min(top, classes - 1)`` most likely classes after the first
    (AutoAttack's targets for APGD-T and FAB-T, from the clean logits)."""
    k = min(top, logits.shape[-1] - 1)
    return logits.sort(dim=-1, descending=True).indices[:, 1 : k + 1]


@checks_images
def apgd_targeted(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    *,
    norm: str = "inf",
    steps: int = 100,
    top: int = 9,
    restarts: int = 1,
    generator: torch.Generator | None = None,
    eval_mode: bool = True,
    progress: bool = False,
    eot: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """APGD-T: targeted DLR APGD towards each of the ``top`` most likely wrong classes of the clean image
    (9 in AutoAttack; ``classes - 1`` when fewer), each run only on the images still correctly classified.

    Returns ``(x_adv, fooled)`` with fooled = misclassified.
    """
    x = x.detach()
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)
        with torch.no_grad():
            logits = model(x)
        if logits.shape[-1] < 4:
            raise ConvscopeError("APGD-T needs at least 4 classes (targeted DLR); use apgd-ce or apgd-dlr")
        targets = target_classes(logits, top)
        out, fooled = x.clone(), logits.argmax(-1) != y
        for j in range(targets.shape[1]):
            for _ in range(restarts):
                todo = (~fooled).nonzero()[:, 0]
                if todo.numel() == 0:
                    break
                adv, ok = apgd(
                    model,
                    x[todo],
                    y[todo],
                    eps,
                    norm=norm,
                    steps=steps,
                    loss="dlr",
                    target=targets[todo, j],
                    generator=generator,
                    eval_mode=eval_mode,
                    progress=progress,
                    hit_target=False,
                    eot=eot,
                )
                out[todo] = adv
                fooled[todo] = ok
    return out, fooled


def _entry(loss: str, norm: str):
    def entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
        return apgd(
            model,
            x,
            labels,
            eps,
            norm=norm,
            loss=loss,
            target=target,
            generator=generator,
            progress=progress,
            **options,
        )[0]

    return entry


def _targeted_entry(norm: str):
    def entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
        if target is not None:  # a given target: targeted DLR towards it
            top = options.pop("top", None)  # noqa: F841  (only meaningful over the likeliest classes)
            return apgd(
                model,
                x,
                labels,
                eps,
                norm=norm,
                loss="dlr",
                target=target,
                generator=generator,
                progress=progress,
                **options,
            )[0]
        return apgd_targeted(model, x, labels, eps, norm=norm, generator=generator, progress=progress, **options)[0]

    return entry


_FIXED = ("norm", "loss", "target", "hit_target")
ATTACKS.add("apgd_ce", _entry("ce", "inf"), norm="linf", eps=8 / 255, wraps=(apgd,), fixed=_FIXED, quick={"steps": 3})
ATTACKS.add("apgd_dlr", _entry("dlr", "inf"), norm="linf", eps=8 / 255, wraps=(apgd,), fixed=_FIXED, quick={"steps": 3})
ATTACKS.add(
    "apgd_t",
    _targeted_entry("inf"),
    norm="linf",
    eps=8 / 255,
    wraps=(apgd_targeted,),
    fixed=("norm",),
    quick={"steps": 2, "top": 2},
)
ATTACKS.add("apgd_ce_l2", _entry("ce", "2"), norm="l2", eps=0.5, wraps=(apgd,), fixed=_FIXED, quick={"steps": 3})
ATTACKS.add(
    "apgd_t_l2",
    _targeted_entry("2"),
    norm="l2",
    eps=0.5,
    wraps=(apgd_targeted,),
    fixed=("norm",),
    quick={"steps": 2, "top": 2},
)
