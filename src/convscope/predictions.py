"""Top-k predictions of a classifier."""

from __future__ import annotations

__all__ = ["predict", "Prediction"]

from dataclasses import dataclass

import torch

from .checks import check_images, model_device
from .hooks import frozen
from .targets import class_name


@dataclass(frozen=True)
class Prediction:
    """One ranked class for one image."""

    class_id: int
    label: str
    probability: float


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, topk: int = 5) -> list[list[Prediction]]:
    """Softmax top-k per image: a list (per image) of :class:`Prediction`, most likely first."""
    x = check_images(x)
    with frozen(model):
        probabilities = model(x.to(model_device(model))).softmax(dim=-1)
    labels = getattr(model, "labels", None)
    values, ids = probabilities.topk(min(topk, probabilities.shape[-1]), dim=-1)
    return [
        [Prediction(int(i), class_name(labels, int(i)), float(v)) for v, i in zip(row_v, row_i)]
        for row_v, row_i in zip(values.cpu(), ids.cpu())
    ]
