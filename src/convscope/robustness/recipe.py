"""The optimiser and learning-rate schedule of adversarial training, as the papers set them.

Madry et al. 2018 and Rice et al. 2020 (CIFAR-10): SGD with momentum 0.9, weight decay 5e-4 (2e-4 in
Madry's code), learning rate 0.1 divided by 10 at 50 % and 75 % of the epochs (Rice: epochs 100
and 150 of 200) — the ``"piecewise"`` schedule. Cosine annealing (Loshchilov & Hutter 2017) is the
other common choice (``"cosine"``); Wong et al. 2020 use a cyclic one for fast FGSM-RS. Adam on
request (default lr 1e-3, no weight decay). An optional linear warm-up (Goyal et al. 2017) over
``warmup_epochs``.

The rate is a pure function of the step (:meth:`Recipe.lr_at`), set on the optimiser before each
step, so a resumed run needs only the step count to continue the schedule exactly.
"""

from __future__ import annotations

__all__ = ["OPTIMIZERS", "SCHEDULES", "Recipe"]

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch

from ..errors import ConvscopeError


OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("piecewise", "cosine", "constant")


@dataclass
class Recipe:
    """Optimiser and schedule of a training run.

    Attributes:
        optimizer: ``"sgd"`` (momentum, weight decay) or ``"adam"``.
        lr: peak learning rate (default 0.1 for SGD, 1e-3 for Adam).
        momentum: SGD momentum; weight_decay: L2 weight decay (default 5e-4 for SGD, 0 for Adam).
        schedule: ``"piecewise"`` (× ``gamma`` at each fraction of ``milestones``), ``"cosine"`` or ``"constant"``.
        warmup_epochs: linear warm-up from ``lr / warm-up steps`` to ``lr`` (0: none).
    """

    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    schedule: str = "piecewise"
    warmup_epochs: float = 0.0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConvscopeError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConvscopeError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.lr is None:
            self.lr = 0.1 if self.optimizer == "sgd" else 1e-3
        if self.weight_decay is None:
            self.weight_decay = 5e-4 if self.optimizer == "sgd" else 0.0
        self.milestones = tuple(float(m) for m in self.milestones)
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1 or self.warmup_epochs < 0:
            raise ConvscopeError("lr must be positive, weight decay and warm-up non-negative, momentum in [0, 1)")
        if not all(0 < m < 1 for m in self.milestones) or not 0 < self.gamma <= 1:
            raise ConvscopeError("milestones are fractions of the epochs in (0, 1) and gamma is in (0, 1]")

    def build(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The optimiser over ``parameters`` (weight decay on all of them, as the papers' code)."""
        lr, decay = float(self.lr or 0), float(self.weight_decay or 0)
        if self.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=lr, momentum=self.momentum, weight_decay=decay)
        return torch.optim.Adam(parameters, lr=lr, weight_decay=decay)

    def lr_at(self, step: int, steps_per_epoch: int, epochs: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) of a run of ``epochs`` epochs."""
        lr, done = float(self.lr or 0), step / steps_per_epoch  # epochs completed before this step
        warmup = self.warmup_epochs * steps_per_epoch
        factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if self.schedule == "piecewise":
            factor *= self.gamma ** sum(done >= m * epochs for m in self.milestones)
        elif self.schedule == "cosine":
            span = max(epochs - self.warmup_epochs, 1e-12)
            factor *= 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, done - self.warmup_epochs) / span)))
        return lr * factor

    def describe(self) -> str:
        """``"SGD lr 0.1, momentum 0.9, weight decay 0.0005, piecewise (×0.1 at 50%, 75%)"``."""
        head = f"{self.optimizer.upper() if self.optimizer == 'sgd' else 'Adam'} lr {self.lr:g}"
        if self.optimizer == "sgd":
            head += f", momentum {self.momentum:g}"
        head += f", weight decay {self.weight_decay:g}, {self.schedule}"
        if self.schedule == "piecewise":
            head += f" (×{self.gamma:g} at " + ", ".join(f"{m:.0%}" for m in self.milestones) + ")"
        return head + (f", {self.warmup_epochs:g} warm-up epochs" if self.warmup_epochs else "")

    def as_dict(self) -> dict:
        record = asdict(self)
        record["milestones"] = list(self.milestones)
        return record
