"""The record an attack returns: the adversarial batch and per-image measurements."""

from __future__ import annotations

__all__ = ["AttackResult", "distances"]

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..targets import class_name


@dataclass
class AttackResult:
    """What :func:`convscope.attack` found, one entry per image.

    Attributes:
        method: the registry name of the attack.
        x: the original images (N, 3, H, W) in [0, 1].
        x_adv: the adversarial images (N, 3, H, W) in [0, 1].
        labels: the true (or predicted, when none were given) classes LongTensor[N].
        target: the target classes for a targeted attack, else None.
        success: Bool[N], prediction on ``x_adv`` != label (untargeted) or == target.
        linf, l2: Tensor[N], distances ``||x_adv - x||`` in pixel units over the whole image.
        l0: LongTensor[N], number of pixel positions (H×W) with any channel changed.
        queries: LongTensor[N] of model evaluations per image for black-box attacks, else None.
        predicted, confidence: LongTensor[N] top class on ``x_adv`` and its probability.
        original_predicted, original_confidence: the same on ``x``.
        seconds: wall time of the attack.
        eps: the budget used (None for unbounded attacks such as C&W and DeepFool).
        labels_text: class names of the model, if known (for display).
    """

    method: str
    x: torch.Tensor
    x_adv: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor | None
    success: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    l0: torch.Tensor
    queries: torch.Tensor | None
    predicted: torch.Tensor
    confidence: torch.Tensor
    original_predicted: torch.Tensor
    original_confidence: torch.Tensor
    seconds: float
    eps: float | None = None
    labels_text: Sequence[str] | None = field(default=None, repr=False)

    @property
    def perturbation(self) -> torch.Tensor:
        """``x_adv - x`` (N, 3, H, W)."""
        return self.x_adv - self.x

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    def name_of(self, class_id: int) -> str:
        return class_name(self.labels_text, class_id)

    def rows(self) -> list[dict]:
        """One plain dict per image (for tables and JSON)."""
        rows = []
        for i in range(self.x.shape[0]):
            rows.append(
                {
                    "label": int(self.labels[i]),
                    "target": None if self.target is None else int(self.target[i]),
                    "original": self.name_of(int(self.original_predicted[i])),
                    "original_confidence": float(self.original_confidence[i]),
                    "adversarial": self.name_of(int(self.predicted[i])),
                    "confidence": float(self.confidence[i]),
                    "success": bool(self.success[i]),
                    "linf": float(self.linf[i]),
                    "l2": float(self.l2[i]),
                    "l0": int(self.l0[i]),
                    "queries": None if self.queries is None else int(self.queries[i]),
                }
            )
        return rows

    def __repr__(self) -> str:
        return (
            f"AttackResult(method={self.method!r}, n={self.x.shape[0]}, success_rate={self.success_rate:.2f}, "
            f"mean_linf={float(self.linf.mean()):.4f}, mean_l2={float(self.l2.mean()):.4f}, seconds={self.seconds:.2f})"
        )


def distances(x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L∞, L2 and L0 (changed pixel positions) of ``x_adv - x`` per image."""
    delta = (x_adv - x).detach().flatten(2)
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1), flat.norm(dim=1), (delta.abs().amax(dim=1) > 1e-6).sum(dim=1)
