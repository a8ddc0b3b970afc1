"""Sparse attacks: JSMA (Papernot et al. 2016) and EAD (Chen et al. 2018), beside the one-pixel attack.

* :func:`jsma`, "The limitations of deep learning in adversarial settings", Algorithm 3 (pairs of
  features, increasing them, θ = +1): at every iteration the forward derivative of the output
  probabilities gives, per feature, α = ∂F_t/∂x and β = ∂(Σ_{j≠t} F_j)/∂x; the pair (p, q) of
  features still in the search domain with α_p + α_q > 0, β_p + β_q < 0 and the largest
  (α_p + α_q)·|β_p + β_q| is set to the maximum (1) and leaves the domain. Stops when the target
  is predicted or ``gamma`` of the features are changed. Features are the C·H·W input values;
  the pair search is O(D²) per image, so it is for small images (D ≤ 12,288, e.g. 64×64 RGB).
  Untargeted use (no target): the likeliest wrong class is the target.
* :func:`ead`, "EAD: elastic-net attacks to deep neural networks via adversarial examples":
  minimise ``c · max(Z_y − max_{j≠y} Z_j, −κ) + β ||δ||_1 + ||δ||_2²`` by FISTA with the projected
  shrinkage-thresholding operator (eq. 7–8) and a square-root decaying learning rate, a binary search
  on ``c`` per image, keeping the successful example with the smallest elastic-net (``"en"``) or L1
  (``"l1"``) distance (the paper's decision rules).
"""

from __future__ import annotations

__all__ = ["ead", "jsma", "MAX_FEATURES"]

import torch
import torch.nn.functional as F

from ..checks import checks_images
from ..errors import ConvscopeError
from ._common import labels_for, progress_bar
from .gradient import _freeze
from .registry import ATTACKS

MAX_FEATURES = 12288


@checks_images
def jsma(
    model,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 0.1,
    theta: float = 1.0,
    eval_mode: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """JSMA, increasing pairs of features (Papernot 2016, Algorithm 3).

    Args:
        model: classifier on images in [0, 1]; x: (N, C, H, W); target: LongTensor[N].
        gamma: the largest fraction of features changed (0.1 as the reference defaults);
        theta: +1 sets chosen features to 1 (the paper's increasing version); -1 sets them to 0.

    Returns:
        x_adv (N, C, H, W).
    """
    if theta not in (1.0, -1.0):
        raise ConvscopeError("theta must be +1 (increase features) or -1 (decrease)")
    features = x[0].numel()
    if features > MAX_FEATURES:
        raise ConvscopeError(
            f"JSMA searches feature pairs (O(D²)); {features} features are too many — resize the "
            f"images to at most {MAX_FEATURES} values (e.g. 64×64 RGB)"
        )
    adv = x.detach().flatten(1).clone()
    limit = 1.0 if theta > 0 else 0.0
    domain = (adv < limit) if theta > 0 else (adv > limit)
    iterations = int(features * gamma / 2)
    diagonal = torch.eye(features, dtype=torch.bool, device=x.device)
    with _freeze(model, eval_mode), progress_bar(iterations, "jsma", progress) as advance:
        for _ in range(iterations):
            point = adv.view_as(x).detach().requires_grad_(True)
            with torch.enable_grad():
                probabilities = model(point).softmax(-1)
                chosen = probabilities.gather(1, target[:, None])[:, 0]
                (alpha,) = torch.autograd.grad(chosen.sum(), point, retain_graph=True)
                (beta,) = torch.autograd.grad((probabilities.sum(-1) - chosen).sum(), point)
            done = probabilities.detach().argmax(-1) == target
            active = ~done & (domain.sum(1) >= 2)
            if not active.any():
                break
            alpha, beta = theta * alpha.flatten(1), theta * beta.flatten(1)
            pair_alpha = alpha[:, :, None] + alpha[:, None, :]
            pair_beta = beta[:, :, None] + beta[:, None, :]
            allowed = domain[:, :, None] & domain[:, None, :] & ~diagonal & (pair_alpha > 0) & (pair_beta < 0)
            score = torch.where(allowed, pair_alpha * -pair_beta, torch.full_like(pair_alpha, -1.0))
            best = score.flatten(1).argmax(1)
            p, q = best // features, best % features
            ok = active & (score.flatten(1).gather(1, best[:, None])[:, 0] > 0)
            rows = ok.nonzero()[:, 0]
            adv[rows, p[rows]] = limit
            adv[rows, q[rows]] = limit
            domain[rows, p[rows]] = False
            domain[rows, q[rows]] = False
            advance(1)
            if not ok.any():
                break
    return adv.view_as(x).detach()


def _shrink(z: torch.Tensor, x: torch.Tensor, beta: float) -> torch.Tensor:
    """EAD's projected shrinkage-thresholding S_β (eq. 8), onto [0, 1]."""
    return torch.where(z - x > beta, (z - beta).clamp(max=1), torch.where(z - x < -beta, (z + beta).clamp(min=0), x))


@checks_images
def ead(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    target: torch.Tensor | None = None,
    beta: float = 1e-3,
    kappa: float = 0.0,
    steps: int = 100,
    search_steps: int = 9,
    initial_c: float = 1e-3,
    lr: float = 1e-2,
    rule: str = "en",
    eval_mode: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """EAD (Chen 2018): elastic-net regularised C&W attack solved by FISTA, binary search on ``c``.

    Args:
        model, x, y: as the other attacks; target: LongTensor[N] for a targeted attack.
        beta: the L1 weight β (1e-3 in the paper); kappa: confidence κ; steps: FISTA iterations per
            ``c`` (the paper: 1000); search_steps: binary search steps (9); initial_c: first ``c`` (1e-3);
        lr: initial learning rate (1e-2, decayed as ``lr · (1 − k/steps)^½``); rule: ``"en"`` or ``"l1"``.

    Returns:
        x_adv: per image the successful example with the smallest distance under ``rule`` (x where none).
    """
    if rule not in ("en", "l1"):
        raise ConvscopeError(f"EAD's decision rule is 'en' or 'l1', got {rule!r}")
    x = x.detach()
    n, view = x.shape[0], (-1, 1, 1, 1)
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)
        goal = y if target is None else target
        low = torch.zeros(n, device=x.device)
        high = torch.full((n,), 1e10, device=x.device)
        c = torch.full((n,), initial_c, device=x.device)
        best = x.clone()
        best_distance = torch.full((n,), float("inf"), device=x.device)

        def objective_parts(images):
            logits = model(images)
            chosen = logits.gather(1, goal[:, None])[:, 0]
            other = logits.masked_fill(F.one_hot(goal, logits.shape[-1]).bool(), float("-inf")).amax(-1)
            margin = (other - chosen) if target is not None else (chosen - other)
            return logits, margin

        with progress_bar(search_steps * steps, "ead", progress) as advance:
            for _ in range(search_steps):
                current, slack = x.clone(), x.clone()
                found = torch.zeros(n, dtype=torch.bool, device=x.device)
                for k in range(steps):
                    rate = lr * (1 - k / steps) ** 0.5
                    point = slack.detach().requires_grad_(True)
                    with torch.enable_grad():
                        _, margin = objective_parts(point)
                        loss = (c * (margin + kappa).clamp_min(0)).sum() + ((point - x) ** 2).sum()
                        (grad,) = torch.autograd.grad(loss, point)
                    following = _shrink(slack - rate * grad, x, beta)
                    slack = following + k / (k + 3) * (following - current)
                    current = following
                    with torch.no_grad():
                        logits, margin = objective_parts(current)
                    success = (
                        margin + kappa <= 0
                        if kappa > 0
                        else (logits.argmax(-1) == goal if target is not None else logits.argmax(-1) != y)
                    )
                    delta = (current - x).flatten(1)
                    distance = delta.abs().sum(1) if rule == "l1" else beta * delta.abs().sum(1) + (delta**2).sum(1)
                    better = success & (distance < best_distance)
                    best = torch.where(better.view(view), current, best)
                    best_distance = torch.where(better, distance, best_distance)
                    found |= success
                    advance(1)
                # binary search on c: smaller after a success, larger (×10 until bracketed) after a failure
                high = torch.where(found, torch.minimum(high, c), high)
                low = torch.where(found, low, torch.maximum(low, c))
                c = torch.where(high < 1e9, (low + high) / 2, c * 10)
    return best


@ATTACKS.register("jsma", norm="l0", uses_eps=False, deterministic=True, wraps=(jsma,), quick={"gamma": 0.02})
def _jsma_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    if target is None:  # untargeted: the likeliest wrong class
        with torch.no_grad():
            logits = model(x).masked_fill(F.one_hot(labels, model(x[:1]).shape[-1]).bool(), float("-inf"))
        target = logits.argmax(-1)
    return jsma(model, x, target, progress=progress, **options)


@ATTACKS.register(
    "ead", norm="l1", uses_eps=False, deterministic=True, wraps=(ead,), quick={"steps": 5, "search_steps": 2}
)
def _ead_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    return ead(model, x, labels, target=target, progress=progress, **options)
