"""The AutoAttack protocol (Croce & Hein 2020): an ensemble of parameter-free attacks, each run only
on the points the previous ones left robust; robust accuracy is the fraction that survives all.

Versions (those of the paper and the reference's ``version=`` argument):

* ``"standard"``: APGD-CE (100 steps) → APGD-T (targeted DLR, 9 targets × 100 steps) → FAB-T
  (9 targets × 100 steps) → Square (5000 queries). The RobustBench number.
* ``"plus"``: APGD-CE and APGD-DLR with 5 restarts, FAB (untargeted, 5 restarts), Square (5 × 5000),
  APGD-T and FAB-T.
* ``"rand"``: for randomised defenses, APGD-CE and APGD-DLR with EOT over 20 draws per step.

L2 runs the same attacks in the L2 ball (Square's L2 version, Algorithm 3 of its paper). Images misclassified without attack count as broken by ``"clean"``. The result
records which attack broke each image (:attr:`AutoAttackResult.broken_by`), the robust accuracy after
each stage and a 95 % Wilson confidence interval for the final robust accuracy.
"""

from __future__ import annotations

__all__ = ["autoattack", "AutoAttackResult", "VERSIONS", "wilson_interval"]

import math
import time
from dataclasses import dataclass, field

import torch

from ..checks import checks_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import check_eps, labels_for
from .apgd import _norm, apgd, apgd_targeted
from .fab import fab, fab_targeted
from .registry import ATTACKS
from .square import square

VERSIONS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class AutoAttackResult:
    """What :func:`autoattack` found.

    Attributes:
        x_adv: adversarial images (the clean image where nothing broke it).
        labels: true classes; clean_correct / robust: Bool[N] before / after all attacks.
        broken_by: per image the attack that first broke it, ``"clean"`` (misclassified already)
            or None (robust).
        stages: ``[(attack name, robust accuracy after it, seconds)]`` in order.
        version, norm, eps: the protocol's settings.
    """

    x_adv: torch.Tensor
    labels: torch.Tensor
    clean_correct: torch.Tensor
    robust: torch.Tensor
    broken_by: list
    stages: list = field(default_factory=list)
    version: str = "standard"
    norm: str = "inf"
    eps: float = 8 / 255
    seconds: float = 0.0

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean())

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean())

    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the robust accuracy."""
        return wilson_interval(int(self.robust.sum()), self.robust.numel())


def _predict(model, x: torch.Tensor, draws: int) -> torch.Tensor:
    """The predicted classes; with ``draws > 1`` (a randomised model, version ``"rand"``) the class of
    the mean softmax over that many forward passes, the decision EOT attacks (see :func:`apgd`)."""
    with torch.no_grad():
        if draws == 1:
            return model(x).argmax(-1)
        return torch.stack([model(x).softmax(-1) for _ in range(draws)]).mean(0).argmax(-1)


def _stage(name, model, x, y, eps, norm, generator, restarts, eot, progress, steps, queries):
    """Run one named attack on (x, y); returns the adversarial images."""
    common = dict(norm=norm, generator=generator, progress=progress)
    if name in ("apgd-ce", "apgd-dlr"):
        return apgd(model, x, y, eps, loss=name[5:], steps=steps, restarts=restarts, eot=eot, **common)[0]
    if name == "apgd-t":
        return apgd_targeted(model, x, y, eps, steps=steps, eot=eot, **common)[0]
    if name in ("fab", "fab-t"):
        run = fab_targeted if name == "fab-t" else fab
        adv, norms = run(model, x, y, eps, steps=steps, restarts=restarts, **common)
        return torch.where((norms <= eps * (1 + 1e-6)).view(-1, 1, 1, 1), adv, x)
    if name == "square":
        adv = x.clone()
        for _ in range(restarts):
            with torch.no_grad():
                todo = (model(adv).argmax(-1) == y).nonzero()[:, 0]
            if todo.numel() == 0:
                break
            adv[todo] = square(model, x[todo], y[todo], eps, queries=queries, **common)[0]
        return adv
    raise ConvscopeError(f"unknown AutoAttack stage {name!r}; known: apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square")


@checks_images
def autoattack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    *,
    norm: str = "inf",
    version: str = "standard",
    attacks: tuple[str, ...] | None = None,
    steps: int = 100,
    queries: int = 5000,
    eot: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> AutoAttackResult:
    """Run the AutoAttack protocol on a batch.

    Args:
        model: classifier taking images in [0, 1]; x: (N, C, H, W) in [0, 1]; y: true labels.
        eps: radius in pixel units (8/255 L∞, 0.5 L2 on CIFAR-10); norm: ``"inf"`` or ``"2"``.
        version: ``"standard"``, ``"plus"`` or ``"rand"`` (see the module docstring).
        attacks: override the version's list of stages (names as in :data:`VERSIONS`).
        steps: iterations of APGD/FAB (100); queries: Square's budget (5000); eot: EOT draws of "rand".
        seed: seeds every random start (reproducible).

    Returns:
        :class:`AutoAttackResult`.

    >>> result = autoattack(model, x, y, eps=8/255)
    >>> result.robust_accuracy, result.interval()
    """
    eps, norm = check_eps(eps), _norm(norm)
    if version not in VERSIONS:
        raise ConvscopeError(f"unknown AutoAttack version {version!r}; known: {', '.join(VERSIONS)}")
    stages = tuple(attacks) if attacks is not None else VERSIONS[version]
    x = x.detach()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    started = time.perf_counter()
    draws = eot if version == "rand" else 1
    with frozen(model):
        y = labels_for(model, x, y)
        clean_correct = _predict(model, x, draws) == y
        robust = clean_correct.clone()
        broken_by = [None if ok else "clean" for ok in clean_correct.tolist()]
        x_adv = x.clone()
        record = []
        for name in stages:
            todo = robust.nonzero()[:, 0]
            stage_start = time.perf_counter()
            if todo.numel() > 0:
                restarts = 5 if version == "plus" and name in ("apgd-ce", "apgd-dlr", "fab", "square") else 1
                adv = _stage(
                    name,
                    model,
                    x[todo],
                    y[todo],
                    eps,
                    norm,
                    generator,
                    restarts,
                    eot if version == "rand" else 1,
                    progress,
                    steps,
                    queries,
                )
                fooled = _predict(model, adv, draws) != y[todo]
                for i in todo[fooled].tolist():
                    broken_by[i] = name
                # a random model's survivors keep the attack's point (its expected accuracy is lower there)
                kept = todo if draws > 1 else todo[fooled]
                x_adv[kept] = adv if draws > 1 else adv[fooled]
                robust[todo[fooled]] = False
            record.append((name, float(robust.float().mean()), time.perf_counter() - stage_start))
    return AutoAttackResult(
        x_adv, y, clean_correct, robust, broken_by, record, version, norm, eps, time.perf_counter() - started
    )


@ATTACKS.register(
    "autoattack", norm="linf", eps=8 / 255, targeted=False, wraps=(autoattack,), quick={"steps": 2, "queries": 10}
)
def _autoattack_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    if target is not None:
        raise ConvscopeError("AutoAttack is untargeted (it runs APGD-T/FAB-T over the likeliest classes itself)")
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=x.device)) if generator is not None else 0
    return autoattack(model, x, labels, 8 / 255 if eps is None else eps, seed=seed, progress=progress, **options).x_adv
