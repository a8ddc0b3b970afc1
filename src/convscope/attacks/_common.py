"""Pieces shared by the attacks: labels, losses, the box projection, progress and Ctrl-C."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from ..errors import ConvscopeError
from ..progress import progress_bar as _progress_bar

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def labels_for(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """``y`` as a LongTensor[N] on ``x``'s device, or the model's prediction when ``y`` is None."""
    if y is None:
        with torch.no_grad():
            return model(x).argmax(dim=-1)
    y = torch.as_tensor(y, device=x.device)
    if y.ndim == 0:
        y = y.expand(x.shape[0])
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point:
        raise ConvscopeError(
            f"labels must be integer class ids of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}"
        )
    return y.long()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy (the default loss of every gradient attack)."""
    return F.cross_entropy(logits, y, reduction="none")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image C&W margin ``max_{i != y} Z_i - Z_y`` (grows as the image is misclassified)."""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[-1]).bool(), float("-inf")).amax(dim=-1)
    return other - true


def confidence_reduction(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image ``-p(y)``: the "confidence reduction" goal (Papernot 2016) lowers p(y) directly."""
    return -logits.softmax(dim=-1).gather(1, y[:, None])[:, 0]


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin, "confidence": confidence_reduction}


def loss_function(loss: str | LossFn) -> LossFn:
    """A loss by name (``ce``, ``margin``, ``confidence``) or a callable ``(logits, y) -> Tensor[N] | scalar``."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ConvscopeError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)} or a callable (logits, y) -> loss")
    return LOSSES[loss]


def check_eps(eps: float, name: str = "eps") -> float:
    eps = float(eps)
    if not eps >= 0:
        raise ConvscopeError(f"{name} must be >= 0 (pixel units in [0, 1], e.g. 8/255), got {eps}")
    return eps


def success(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Bool[N]: the prediction differs from ``y`` (untargeted) or equals ``target`` (targeted)."""
    predicted = logits.argmax(dim=-1)
    return predicted == target if target is not None else predicted != y


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[..., None]]:
    """The package's progress bar (:func:`convscope.progress.progress_bar`) for an attack; Ctrl-C
    stops the block cleanly with a warning. Attacks keep their best result so far in variables
    outside the block, so an interrupted attack still returns the adversarial images it has found."""
    with _progress_bar(total, description, enabled, interrupted="returning the images found so far") as advance:
        yield advance
