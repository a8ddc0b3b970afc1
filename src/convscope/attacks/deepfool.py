"""DeepFool (Moosavi-Dezfooli 2016), batched over images, with overshoot 0.02.

At each step the classifier is linearised around the current point; for each candidate
class k (the ``candidates`` top classes of the original prediction, as in the authors'
code) ``w_k = ∇Z_k − ∇Z_y`` and ``f_k = Z_k − Z_y``; the smallest step to the nearest
linearised boundary is ``r = (|f_l| / ||w_l|| + 1e-4) · w_l / ||w_l||`` with
``l = argmin |f_k| / ||w_k||``. Steps accumulate in ``r_tot`` and the image is
``clip(x + (1 + overshoot) · r_tot, 0, 1)``, as in the paper; images stop once fooled.

Cost per step: one forward and ``candidates`` backward passes for the whole batch (all
images at once, unlike torchattacks which loops per image and backpropagates every
class). Deviation from torchattacks: it applies the overshoot to each step's total
(``x + (1 + overshoot) · r_i`` from the current point); we follow the paper (once, on the
sum), which gives slightly smaller perturbations. Untargeted only, as in the paper.
"""

from __future__ import annotations

__all__ = ["deepfool"]

import torch

from ..checks import checks_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import labels_for, progress_bar
from .registry import ATTACKS


@checks_images
def deepfool(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    steps: int = 50,
    overshoot: float = 0.02,
    candidates: int = 10,
    progress: bool = False,
) -> torch.Tensor:
    """Minimal L2 perturbations that cross the nearest decision boundary.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, 3, H, W) in [0, 1].
        y: the labels to move away from (default: the model's predictions).
        steps: maximum iterations; overshoot: the paper's 0.02.
        candidates: how many top classes (including y) are considered as the next class.
        progress: progress bar (Ctrl-C returns the current images).

    Returns:
        x_adv (N, 3, H, W) in [0, 1].

    >>> x_adv = deepfool(model, x)
    """
    if steps < 1 or candidates < 2:
        raise ConvscopeError("deepfool needs steps >= 1 and candidates >= 2")
    x = x.detach()
    with frozen(model):
        y = labels_for(model, x, y)
        with torch.no_grad():
            logits = model(x)
        others = (
            logits.scatter(1, y[:, None], float("-inf")).topk(min(candidates, logits.shape[-1]) - 1, dim=-1).indices
        )
        total = torch.zeros_like(x)
        adv = x.clone()
        with progress_bar(steps, "deepfool", progress) as advance:
            for _ in range(steps):
                point = adv.clone().requires_grad_(True)
                with torch.enable_grad():
                    logits = model(point)
                    active = logits.argmax(dim=-1) == y
                    if not active.any():
                        break
                    true = logits.gather(1, y[:, None])[:, 0]
                    (grad_true,) = torch.autograd.grad(true.sum(), point, retain_graph=True)
                    best = torch.full_like(true, float("inf"))
                    step = torch.zeros_like(x)
                    for k in range(others.shape[1]):
                        other = logits.gather(1, others[:, k : k + 1])[:, 0]
                        last = k == others.shape[1] - 1
                        (grad_other,) = torch.autograd.grad(other.sum(), point, retain_graph=not last)
                        w = grad_other - grad_true
                        f = (other - true).detach().abs()
                        w_norm = w.flatten(1).norm(dim=1) + 1e-8
                        distance = f / w_norm
                        closer = distance < best
                        best = torch.where(closer, distance, best)
                        move = ((distance + 1e-4) / w_norm).view(-1, 1, 1, 1) * w
                        step = torch.where(closer.view(-1, 1, 1, 1), move, step)
                total = total + step * active.view(-1, 1, 1, 1)
                adv = (x + (1 + overshoot) * total).clamp(0, 1)
                advance(1)
    return adv


@ATTACKS.register(
    "deepfool", norm="l2", uses_eps=False, deterministic=True, targeted=False, wraps=(deepfool,), quick={"steps": 5}
)
def _deepfool_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    if target is not None:
        raise ConvscopeError("deepfool is untargeted (Moosavi-Dezfooli 2016): drop --target or use pgd/cw")
    return deepfool(model, x, labels, progress=progress, **options)
