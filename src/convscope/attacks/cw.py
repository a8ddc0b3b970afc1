"""Carlini & Wagner L2 attack (Carlini & Wagner 2017), batched, with the binary search over c.

The image is optimised in tanh space, ``x' = (tanh(w) + 1) / 2`` (so it always lies in
[0, 1]), minimising ``||x' - x||² + c · f(x')`` with Adam, where
``f = max(Z_y − max_{i≠y} Z_i, −κ)`` (untargeted) or ``max(max_{i≠t} Z_i − Z_t, −κ)``
(targeted) on the logits ``Z``. After each run of ``steps`` Adam steps, ``c`` is halved
towards the last failure for images that succeeded and raised (×10 until a success is
seen, then bisected) for the others, as in the paper's code; each image keeps its
smallest-L2 successful example (or ``x`` itself if none succeeded).

Deviation from torchattacks' ``CW``: it runs a single ``c`` (no binary search); with
``search_steps=1`` this function does the same optimisation (same start
``w = atanh(0.999999 · (2x − 1))``, same loss and Adam steps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import labels_for, progress_bar
from .registry import ATTACKS


def cw(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, targeted: bool = False,
       c: float = 1.0, kappa: float = 0.0, steps: int = 100, lr: float = 0.01, search_steps: int = 5,
       progress: bool = False) -> torch.Tensor:
    """C&W L2 adversarial examples.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, 3, H, W) in [0, 1].
        y: true labels (the prediction when None), or target classes when ``targeted``.
        c: initial trade-off constant; kappa: confidence margin κ on the logits.
        steps: Adam steps per value of c; lr: Adam learning rate.
        search_steps: values of c tried (binary search).
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
                for _ in range(steps):
                    with torch.enable_grad():
                        adv = (torch.tanh(w) + 1) / 2
                        logits = model(adv)
                        l2 = (adv - x).pow(2).flatten(1).sum(dim=1)
                        chosen = logits.masked_select(one_hot)
                        other = logits.masked_fill(one_hot, float("-inf")).amax(dim=-1)
                        gap = (chosen - other) if not targeted else (other - chosen)
                        loss = (l2 + const * gap.clamp_min(-kappa)).sum()
                        optimizer.zero_grad()
                        loss.backward()
                    optimizer.step()
                    with torch.no_grad():
                        predicted = logits.argmax(dim=-1)
                        fooled = (predicted == y) if targeted else (predicted != y)
                        better = fooled & (l2 < best_l2)
                        best_l2 = torch.where(better, l2.detach(), best_l2)
                        best_adv[better] = adv.detach()[better]
                        succeeded |= fooled
                    advance(1)
                upper = torch.where(succeeded, torch.minimum(upper, const), upper)
                lower = torch.where(succeeded, lower, torch.maximum(lower, const))
                const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
    return best_adv


@ATTACKS.register("cw")
def _cw_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return cw(model, x, goal, targeted=target is not None, progress=progress, **options)
