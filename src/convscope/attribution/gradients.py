"""Plain input-gradient methods: saliency (Simonyan et al. 2014) and input x gradient.

Every method here costs one forward and one backward pass for the whole batch.
"""

from __future__ import annotations

__all__ = [
    "CHANNELS",
    "input_gradient",
    "input_x_gradient",
    "objective_score",
    "OBJECTIVES",
    "reduce_channels",
    "saliency",
]

import torch

from ..errors import ConvscopeError
from ..gradients import Score, input_gradient
from ..targets import Target, resolve_target, target_score
from .registry import METHODS

OBJECTIVES = ("logit", "log_softmax", "probability")
CHANNELS = ("max", "sum", None)


def score_function(model: torch.nn.Module, target: Target, objective: str = "logit") -> Score:
    """``logits -> Tensor[N]``: the score of ``target`` to differentiate.

    ``objective``: ``"logit"`` (the pre-softmax class score, Simonyan's choice and the
    anchors' default), ``"log_softmax"`` (log p(y|x)) or ``"probability"`` (p(y|x)).
    A callable target is applied to the logits whatever the objective.
    """
    if objective not in OBJECTIVES:
        raise ConvscopeError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    labels = getattr(model, "labels", None)

    def score(logits: torch.Tensor) -> torch.Tensor:
        if callable(target) and not isinstance(target, torch.Tensor):
            return target_score(target, logits, labels)
        ids = resolve_target(target, logits, labels)
        if objective == "log_softmax":
            logits = logits.log_softmax(dim=-1)
        elif objective == "probability":
            logits = logits.softmax(dim=-1)
        return logits.gather(1, ids[:, None])[:, 0]

    return score


def objective_score(model: torch.nn.Module, x: torch.Tensor, target: Target, objective: str = "logit") -> torch.Tensor:
    """Forward ``x`` and return the score per image ``Tensor[N]`` (:func:`score_function`)."""
    return score_function(model, target, objective)(model(x))


def target_gradient(model: torch.nn.Module, x: torch.Tensor, target: Target, objective: str = "logit") -> torch.Tensor:
    """d score / d x, shape (N, 3, H, W) (:func:`convscope.gradients.input_gradient` of the target's score)."""
    return input_gradient(model, x, score_function(model, target, objective))


def reduce_channels(values: torch.Tensor, channels: str | None, absolute: bool = False) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W) by ``"max"`` or ``"sum"`` over channels, or as is for ``None``.

    With ``absolute`` the magnitude is taken first (Simonyan's map: max over channels of
    |gradient|). Without it, ``"max"`` keeps the signed value of largest magnitude.
    """
    if channels not in CHANNELS:
        raise ConvscopeError(f"channels must be 'max', 'sum' or None, got {channels!r}")
    if absolute:
        values = values.abs()
    if channels is None:
        return values
    if channels == "sum":
        return values.sum(dim=1, keepdim=True)
    if absolute:
        return values.amax(dim=1, keepdim=True)
    return values.gather(1, values.abs().argmax(dim=1, keepdim=True))


@METHODS.register(kind="gradient")
def saliency(
    model, x, target=None, signed: bool = False, channels: str | None = "max", objective: str = "logit"
) -> torch.Tensor:
    """Image-specific class saliency (Simonyan, Vedaldi & Zisserman 2014).

    The map is max over colour channels of |d S_c / d x| with S_c the pre-softmax class
    score. Options: ``signed=True`` keeps the sign (for ``channels="max"`` the signed value
    of largest magnitude), ``channels="sum"`` sums instead, ``channels=None`` gives the
    per-channel gradient (N, 3, H, W) (captum ``Saliency(abs=...)`` returns that),
    ``objective="log_softmax"`` differentiates log p(y|x).

    Returns:
        (N, 1, H, W), or (N, 3, H, W) for ``channels=None``.

    >>> attribute(model, x, 285, method="saliency").shape
    torch.Size([1, 1, 224, 224])
    """
    return reduce_channels(target_gradient(model, x, target, objective), channels, absolute=not signed)


@METHODS.register(kind="gradient")
def input_x_gradient(model, x, target=None, channels: str | None = None, objective: str = "logit") -> torch.Tensor:
    """Input times gradient (Shrikumar et al. 2016): ``x * d score / d x``.

    Convention: ``x`` is the [0, 1] RGB input (normalisation is part of the model), so the
    reference point is the black image, as in captum ``InputXGradient`` on the same model.
    Returns (N, 3, H, W) by default, (N, 1, H, W) with ``channels="sum"`` (signed sum).
    """
    grad = target_gradient(model, x, target, objective)
    return reduce_channels(x.detach() * grad, channels)
