"""Carlini & Wagner L2 attack (Carlini & Wagner 2017), batched, with the binary search over c.

The image is optimised in tanh space, ``x' = (tanh(w) + 1) / 2`` (so it always lies in
[0, 1]), minimising ``||x' - x||² + c · f(x')`` with Adam, where
``f = max(Z_y − max_{i≠y} Z_i, −κ)`` (untargeted) or ``max(max_{i≠t} Z_i − Z_t, −κ)``
(targeted) on the logits ``Z``. After each run of ``steps`` Adam steps, ``c`` is halved
towards the last failure for images that succeeded and raised (×10 until a success is
seen, then bisected) for the others, as in the paper's code; each image keeps its
smallest-L2 successful example (or ``x`` itself if none succeeded). With ``abort_early``
(the paper's code's ``ABORT_EARLY``), each image's run for one ``c`` stops when its loss has
not fallen by 0.01 % over the last ``steps // 10`` steps. Off by default: the paper checks
every 1,000 of 10,000 steps; over windows of 10 steps it stops too soon (on chelsea and coffee
at 128 px, 100 steps × 5 values of c: 5× faster, but L2 0.47 / 0.45 instead of 0.28 / 0.011).

Deviation from torchattacks' ``CW``: it runs a single ``c`` (no binary search) and stops
as soon as its cost rises between checks; with ``search_steps=1, abort_early=False`` this
function does the same optimisation for all ``steps`` (same start
``w = atanh(0.999999 · (2x − 1))``, same loss and Adam steps).
"""

from __future__ import annotations

__all__ = ["cw"]

import torch
import torch.nn.functional as F

from ..checks import checks_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import labels_for, progress_bar
from .registry import ATTACKS


@checks_images
def cw(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    targeted: bool = False,
    c: float = 1.0,
    kappa: float = 0.0,
    steps: int = 100,
    lr: float = 0.01,
    search_steps: int = 5,
    abort_early: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """C&W L2 adversarial examples.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, 3, H, W) in [0, 1].
        y: true labels (the prediction when None), or target classes when ``targeted``.
        c: initial trade-off constant; kappa: confidence margin κ on the logits.
        steps: Adam steps per value of c; lr: Adam learning rate.
        search_steps: values of c tried (binary search).
        abort_early: end an image's run for one c when its loss stalls (< 0.01 % fall per
            steps // 10 steps): faster, larger perturbations.
        progress: progress bar (Ctrl-C returns the best examples found so far).

    Returns:
        x_adv (N, 3, H, W) in [0, 1]: per image the smallest successful example, else ``x``.

    >>> x_adv = cw(model, x, steps=50, search_steps=3)
    """
    if steps < 1 or search_steps < 1 or c <= 0:
        raise ConvscopeError("cw needs steps >= 1, search_steps >= 1 and c > 0")
    x = x.detach()
    count = x.shape[0]
    best_adv, best_l2 = x.clone(), torch.full((count,), float("inf"), device=x.device)
    with frozen(model):
        y = labels_for(model, x, y)
        one_hot = F.one_hot(y, model(x[:1]).shape[-1]).bool()
        const = torch.full((count,), float(c), device=x.device)
        lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
        start = torch.atanh((2 * x - 1).clamp(-1, 1) * 0.999999)
        with progress_bar(steps * search_steps, "cw", progress) as advance:
            for _ in range(search_steps):
                w = start.clone().requires_grad_(True)
                optimizer = torch.optim.Adam([w], lr=lr)
                succeeded = torch.zeros(count, dtype=torch.bool, device=x.device)
                active = torch.ones(count, dtype=torch.bool, device=x.device)
                previous = torch.full((count,), float("inf"), device=x.device)
                for step in range(steps):
                    rows = active.nonzero().squeeze(1)  # images still improving (each stops on its own)
                    with torch.enable_grad():
                        adv = (torch.tanh(w[rows]) + 1) / 2
                        logits = model(adv)
                        l2 = (adv - x[rows]).pow(2).flatten(1).sum(dim=1)
                        chosen = logits.masked_select(one_hot[rows])
                        other = logits.masked_fill(one_hot[rows], float("-inf")).amax(dim=-1)
                        gap = (chosen - other) if not targeted else (other - chosen)
                        losses = l2 + const[rows] * gap.clamp_min(-kappa)
                        optimizer.zero_grad()
                        losses.sum().backward()
                    optimizer.step()
                    with torch.no_grad():
                        predicted = logits.argmax(dim=-1)
                        fooled = (predicted == y[rows]) if targeted else (predicted != y[rows])
                        better = fooled & (l2 < best_l2[rows])
                        best_l2[rows[better]] = l2[better]
                        best_adv[rows[better]] = adv[better]
                        succeeded[rows[fooled]] = True
                        if abort_early and step % max(steps // 10, 1) == 0:
                            stalled = losses > 0.9999 * previous[rows]
                            previous[rows] = losses
                            active[rows[stalled]] = False
                    advance(1)
                    if not active.any():
                        break
                upper = torch.where(succeeded, torch.minimum(upper, const), upper)
                lower = torch.where(succeeded, lower, torch.maximum(lower, const))
                const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
    return best_adv


@ATTACKS.register(
    "cw", norm="l2", uses_eps=False, deterministic=True, wraps=(cw,), quick={"steps": 5, "search_steps": 2}
)
def _cw_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return cw(model, x, goal, targeted=target is not None, progress=progress, **options)
