"""Checks for gradient masking: signs that a model only *looks* robust because its gradients
are useless to the attacker (Athalye, Carlini & Wagner 2018; Carlini et al. 2019, "On
evaluating adversarial robustness", §5; the sanity checks AutoAttack's authors run).

:func:`check_gradient_masking` attacks the same images several ways and tests four
expectations that hold for any model whose gradients are informative:

1. an iterative attack (PGD) is at least as strong as a single step (FGSM);
2. a white-box attack (PGD) is at least as strong as a black-box one (Square, scores only);
3. a larger budget (4 × eps) is at least as strong as a smaller one;
4. an unbounded attack (eps = 1: any image) fools every image;

and a fifth, AutoAttack's ``check_randomized``: two forward passes of the same images give the same
logits. A randomised model (noise, random resizing) fails it: its single-draw gradients and
accuracies are samples, and it needs an EOT attack (``autoattack(..., version="rand")``).

A failed check is a warning, not a proof: it says "do not trust this robust accuracy; try an
adaptive attack (BPDA/EOT, :mod:`convscope.robustness.defenses`)". A model whose output does not
reach its input through autograd at all (a NumPy or PIL step inside) is attacked with zero
gradients instead of failing: the extreme case of masking.
"""

from __future__ import annotations

__all__ = ["check_gradient_masking", "MaskingCheck", "MaskingReport"]

import warnings
from dataclasses import dataclass, field

import torch

from torch import nn

from ..checks import check_images
from ..hooks import frozen
from ._common import check_eps, labels_for
from .gradient import fgsm, pgd
from .square import square


class _InputInGraph(nn.Module):
    """``model(x)``, kept connected to ``x`` (a zero term) so that a model which detaches its
    input gives zero gradients rather than an autograd error."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + 0 * x.sum()


@dataclass
class MaskingCheck:
    """One expectation: its name, whether it held, and the numbers behind it."""

    name: str
    passed: bool
    detail: str


@dataclass
class MaskingReport:
    """Accuracies under each attack (fraction still correct) and the checks drawn from them."""

    eps: float
    accuracy: dict[str, float] = field(default_factory=dict)
    checks: list[MaskingCheck] = field(default_factory=list)

    @property
    def suspicious(self) -> bool:
        """True when any check failed: the robust accuracy should not be trusted."""
        return not all(check.passed for check in self.checks)


def check_gradient_masking(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    *,
    steps: int = 20,
    queries: int = 500,
    tolerance: int = 0,
    seed: int = 0,
    warn: bool = True,
) -> MaskingReport:
    """Run FGSM, PGD (``steps``), Square (``queries``), PGD at 4 × eps and unbounded PGD on
    ``x`` (N, 3, H, W) in [0, 1] and check the four expectations of the module notes.

    Args:
        model: classifier taking RGB in [0, 1] (a defended model, typically).
        y: true labels (the prediction when None); eps: L∞ budget in pixel units.
        tolerance: how many images an expectation may miss by (0: none; the attacks are
            random, so a large set may need 1–2).
        warn: emit a ``RuntimeWarning`` per failed check.

    >>> report = check_gradient_masking(defended, x, y, eps=8/255)
    >>> report.suspicious
    False
    """
    x = check_images(x)
    eps = check_eps(eps)
    generator = torch.Generator().manual_seed(seed)
    model = _InputInGraph(model)
    with frozen(model):
        y = labels_for(model, x, y)
        with torch.no_grad():
            first, second = model(x), model(x)
        logit_change = float((first - second).abs().max())

        def correct(images: torch.Tensor) -> int:
            with torch.no_grad():
                return int((model(images).argmax(dim=-1) == y).sum())

        alpha = max(eps / 4, 1 / 255)
        counts = {
            "clean": correct(x),
            "fgsm": correct(fgsm(model, x, y, eps)),
            "pgd": correct(pgd(model, x, y, eps, alpha, steps, generator=generator)),
            "square": correct(square(model, x, y, eps, queries=queries, generator=generator)[0]),
            "pgd 4×eps": correct(pgd(model, x, y, min(4 * eps, 1.0), 4 * alpha, steps, generator=generator)),
            "pgd unbounded": correct(pgd(model, x, y, 1.0, 0.1, steps, generator=generator)),
        }
    total = len(x)
    report = MaskingReport(eps, {name: count / total for name, count in counts.items()})
    expectations = [
        (
            "iterative beats single-step",
            counts["pgd"] <= counts["fgsm"] + tolerance,
            f"PGD-{steps} leaves {counts['pgd']}/{total} correct, FGSM {counts['fgsm']}/{total}",
        ),
        (
            "white-box beats black-box",
            counts["pgd"] <= counts["square"] + tolerance,
            f"PGD-{steps} leaves {counts['pgd']}/{total} correct, Square ({queries} queries) {counts['square']}/{total}",
        ),
        (
            "a larger budget is stronger",
            counts["pgd 4×eps"] <= counts["pgd"] + tolerance,
            f"PGD at 4×eps leaves {counts['pgd 4×eps']}/{total} correct, at eps {counts['pgd']}/{total}",
        ),
        (
            "an unbounded attack fools everything",
            counts["pgd unbounded"] <= tolerance,
            f"PGD with eps = 1 leaves {counts['pgd unbounded']}/{total} correct",
        ),
        (
            "the model is deterministic",
            logit_change <= 1e-4 * max(float(first.abs().max()), 1.0),
            f"two forward passes of the same images differ by up to {logit_change:.3g} in a logit"
            + ("" if logit_change == 0 else ": a randomised model, attack it with EOT (autoattack version='rand')"),
        ),
    ]
    report.checks = [MaskingCheck(name, passed, detail) for name, passed, detail in expectations]
    if warn:
        for check in report.checks:
            if not check.passed:
                warnings.warn(
                    f"possible gradient masking: {check.name} failed ({check.detail})", RuntimeWarning, stacklevel=2
                )
    return report
