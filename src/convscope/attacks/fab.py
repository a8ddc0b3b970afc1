"""FAB, the Fast Adaptive Boundary attack (Croce & Hein 2019, "Minimally distorted adversarial
examples with a fast adaptive boundary attack"), L∞ and L2, untargeted and targeted.

A minimum-norm attack, written from the paper's Algorithm 1. At every iterate ``x_i`` the
classifier is linearised; the decision hyperplane ``π_s`` of the class ``s`` with the smallest
linearised distance ``|f_s − f_c| / ||∇f_s − ∇f_c||_q`` (q the dual norm; targeted: ``s`` is the
target) is used to compute the projections of both ``x_i`` and the original ``x`` onto ``π_s ∩ [0,1]``;
the next iterate is the box-clipped convex combination
``(1 − α)(x_i + η δ_i) + α (x + η δ_orig)`` with ``α = min(|δ_i| / (|δ_i| + |δ_orig|), α_max)``,
and whenever it is adversarial it is recorded (if closer than the best so far) and pulled back
towards ``x`` by the "backward step" ``x + β (x_{i+1} − x)``. Defaults are AutoAttack's:
``η = 1.05``, ``α_max = 0.1``, ``β = 0.9``, 100 iterations.

The projection onto a hyperplane intersected with the box is solved exactly up to bisection:
for L∞ the minimiser is ``δ_k = sign(w_k) min(t, room_k)`` and for L2 ``δ_k = clip(λ w_k, box)``,
both monotone in a scalar (``t`` or ``λ``) found by bisection (the paper sorts instead; same result).
Untargeted FAB needs the gradient of every logit (one backward per class); FAB-T (targeted, as
in AutoAttack) one per target. With restarts > 1 later runs start at a random point of the ball of
radius ``min(best norm, eps) / 2`` (paper Sec. 3.3).
"""

from __future__ import annotations

__all__ = ["fab", "fab_targeted", "project_halfspace_box"]

import torch

from ..checks import checks_images
from ..errors import ConvscopeError
from ._common import labels_for, progress_bar
from .apgd import _norm, target_classes
from .gradient import _freeze
from .registry import ATTACKS

_BISECTION = 40


def _lnorm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "inf" else flat.norm(dim=1)


def project_halfspace_box(point: torch.Tensor, w: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """δ of smallest L∞/L2 norm with ``<w, δ> >= b`` and ``point + δ`` in [0, 1] (per image).

    ``point``, ``w``: (N, D); ``b``: (N,). δ = 0 where ``b <= 0``; where the half-space cannot be
    reached inside the box, the δ that gets closest (all coordinates at their box limit along w).
    """
    sign = w.sign()
    room = torch.where(w > 0, 1 - point, point)  # how far each coordinate may move along sign(w)
    room = torch.where(w == 0, torch.zeros_like(room), room)
    need = b.clamp_min(0)
    if norm == "inf":

        def reach(t):
            return (w.abs() * torch.minimum(t[:, None], room)).sum(dim=1)

        low, high = torch.zeros_like(need), room.amax(dim=1)
        for _ in range(_BISECTION):
            middle = (low + high) / 2
            enough = reach(middle) >= need
            high, low = torch.where(enough, middle, high), torch.where(enough, low, middle)
        return sign * torch.minimum(high[:, None], room) * (need > 0)[:, None]
    magnitude = w.abs()

    def step(lam):
        return torch.minimum(lam[:, None] * magnitude, room)

    ratio = torch.where(magnitude > 0, room / magnitude.clamp_min(1e-30), torch.zeros_like(room))
    low, high = torch.zeros_like(need), ratio.amax(dim=1)
    for _ in range(_BISECTION):
        middle = (low + high) / 2
        enough = (magnitude * step(middle)).sum(dim=1) >= need
        high, low = torch.where(enough, middle, high), torch.where(enough, low, middle)
    return sign * step(high) * (need > 0)[:, None]


def _logits_and_gradients(model, x, y, classes):
    """logits (N, K) and, for each column of ``classes`` (N, m), ``f_s − f_y`` and its input gradient."""
    point = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(point)
        true = logits.gather(1, y[:, None])
        differences, gradients = [], []
        for j in range(classes.shape[1]):
            difference = logits.gather(1, classes[:, j : j + 1]) - true
            (grad,) = torch.autograd.grad(difference.sum(), point, retain_graph=j + 1 < classes.shape[1])
            differences.append(difference.detach()[:, 0])
            gradients.append(grad.flatten(1))
    return logits.detach(), torch.stack(differences, 1), torch.stack(gradients, 1)


def _run(model, x, y, target, norm, steps, eps, start, alpha_max, eta, beta, advance):
    n, shape = x.shape[0], x.shape
    flat_x = x.flatten(1)
    num_classes = None
    current = start.flatten(1)
    best = flat_x.clone()
    best_norm = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
    for _ in range(steps):
        if target is not None:
            classes = target[:, None]
        else:
            if num_classes is None:
                with torch.no_grad():
                    num_classes = model(x[:1]).shape[-1]
            others = torch.arange(num_classes, device=x.device).expand(n, -1)
            classes = others[others != y[:, None]].view(n, num_classes - 1)
        logits, differences, gradients = _logits_and_gradients(model, current.view(shape), y, classes)
        advance(1)
        dual = gradients.abs().sum(-1) if norm == "inf" else gradients.norm(dim=-1)
        distance = differences.abs() / (dual + 1e-12)
        pick = distance.argmin(dim=1)
        g = differences.gather(1, pick[:, None])[:, 0]
        w = gradients[torch.arange(n), pick]
        # hyperplane π: g + <w, z − current> = 0, approached from g < 0
        delta = project_halfspace_box(current, w, -g, norm)
        delta_orig = project_halfspace_box(flat_x, w, -g - (w * (flat_x - current)).sum(1), norm)
        size, size_orig = _lnorm(delta, norm), _lnorm(delta_orig, norm)
        alpha = torch.minimum(size / (size + size_orig + 1e-12), torch.full_like(size, alpha_max))[:, None]
        current = ((1 - alpha) * (current + eta * delta) + alpha * (flat_x + eta * delta_orig)).clamp(0, 1)
        with torch.no_grad():
            predicted = model(current.view(shape)).argmax(-1)
        fooled = predicted == target if target is not None else predicted != y
        distance_now = _lnorm(current - flat_x, norm)
        better = fooled & (distance_now < best_norm)
        best = torch.where(better[:, None], current, best)
        best_norm = torch.where(better, distance_now, best_norm)
        current = torch.where(fooled[:, None], (1 - beta) * flat_x + beta * current, current)
    return best.view(shape), best_norm


@checks_images
def fab(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float | None = None,
    *,
    norm: str = "inf",
    steps: int = 100,
    restarts: int = 1,
    target: torch.Tensor | None = None,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    generator: torch.Generator | None = None,
    eval_mode: bool = True,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FAB (Croce & Hein 2019): the smallest L∞/L2 perturbation it finds that changes the class
    (or, with ``target``, crosses the boundary between the true class and the target).

    Args:
        model, x, y: as :func:`convscope.attacks.apgd.apgd`.
        eps: only used for the random restarts' radius (and by the registry entry, which keeps
            only perturbations within eps); None: unbounded.
        norm: ``"inf"`` or ``"2"``; steps: iterations per run; restarts: runs (the first from x).
        target: LongTensor[N] (FAB-T); alpha_max, eta, beta: the paper's constants.

    Returns:
        ``(x_adv, norms)``: the closest adversarial image found per image (x where none) and its
        distance (inf where none).
    """
    norm = _norm(norm)
    if steps < 1 or restarts < 1:
        raise ConvscopeError("FAB needs steps >= 1 and restarts >= 1")
    x = x.detach()
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)
        out = x.clone()
        norms = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        with torch.no_grad():
            correct = model(x).argmax(-1) == y
        out_norms = torch.where(correct, norms, torch.zeros_like(norms))
        with progress_bar(steps * restarts, "fab", progress) as advance:
            for r in range(restarts):
                todo = correct.nonzero()[:, 0]
                if todo.numel() == 0:
                    break
                start = x[todo]
                if r > 0:
                    radius = torch.minimum(out_norms[todo], torch.full_like(out_norms[todo], eps or float("inf")))
                    radius = torch.where(torch.isfinite(radius), radius, torch.full_like(radius, eps or 0.1)) / 2
                    noise = torch.rand(start.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
                    if norm == "2":
                        noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                    start = (start + noise * radius.view(-1, 1, 1, 1)).clamp(0, 1)
                adv, found = _run(
                    model,
                    x[todo],
                    y[todo],
                    None if target is None else target[todo],
                    norm,
                    steps,
                    eps,
                    start,
                    alpha_max,
                    eta,
                    beta,
                    advance,
                )
                better = found < out_norms[todo]
                out[todo[better]] = adv[better]
                out_norms[todo[better]] = found[better]
    return out, out_norms


@checks_images
def fab_targeted(
    model, x: torch.Tensor, y: torch.Tensor | None = None, eps: float | None = None, *, top: int = 9, **options
) -> tuple[torch.Tensor, torch.Tensor]:
    """FAB-T as in AutoAttack: targeted FAB towards each of the ``top`` most likely wrong classes of
    the clean image in turn, keeping per image the smallest perturbation found. Returns ``(x_adv, norms)``."""
    x = x.detach()
    with _freeze(model, options.get("eval_mode", True)):
        y = labels_for(model, x, y)
        with torch.no_grad():
            targets = target_classes(model(x), top)
        out, norms = x.clone(), None
        for j in range(targets.shape[1]):
            adv, found = fab(model, x, y, eps, target=targets[:, j], **options)
            if norms is None:
                out, norms = adv, found
            else:
                better = found < norms
                out[better], norms[better] = adv[better], found[better]
    return out, norms


def _entry(norm: str, targeted: bool):
    def entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
        if target is not None:
            adv, norms = fab(
                model, x, labels, eps, norm=norm, target=target, generator=generator, progress=progress, **options
            )
        elif targeted:
            adv, norms = fab_targeted(
                model, x, labels, eps, norm=norm, generator=generator, progress=progress, **options
            )
        else:
            adv, norms = fab(model, x, labels, eps, norm=norm, generator=generator, progress=progress, **options)
        if eps is not None:  # a bounded attack keeps only perturbations inside the ball
            adv = torch.where((norms <= eps * (1 + 1e-6)).view(-1, 1, 1, 1), adv, x)
        return adv

    return entry


ATTACKS.add(
    "fab",
    _entry("inf", False),
    norm="linf",
    eps=8 / 255,
    deterministic=True,
    wraps=(fab,),
    fixed=("norm", "target"),
    quick={"steps": 3},
)
ATTACKS.add(
    "fab_t",
    _entry("inf", True),
    norm="linf",
    eps=8 / 255,
    deterministic=True,
    wraps=(fab_targeted, fab),
    fixed=("norm", "target"),
    quick={"steps": 2, "top": 2},
)
ATTACKS.add(
    "fab_l2",
    _entry("2", False),
    norm="l2",
    eps=0.5,
    deterministic=True,
    wraps=(fab,),
    fixed=("norm", "target"),
    quick={"steps": 3},
)
