"""The one target contract of convscope.

A target says which output to explain, attack towards, or maximise. Accepted forms:
``None`` (the predicted class), ``int``, a sequence of ints (one per image), a
``Tensor[N]`` of ints, a class name (``"espresso"``), or a callable ``logits -> Tensor[N]``
(a score per image). Anything else is a clear error.
"""

from __future__ import annotations

__all__ = ["class_index", "class_name", "resolve_target", "Target", "target_score"]

import difflib
from typing import Callable, Sequence, Union

import torch

from .errors import ConvscopeError

Target = Union[None, int, str, Sequence[int], torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


def class_name(labels: Sequence[str] | None, class_id: int | None) -> str:
    """The label of ``class_id``, or ``str(class_id)`` when the model has no labels (the one place
    every caption, table and API answer names a class)."""
    if class_id is None or not labels:
        return str(class_id)
    return labels[int(class_id)]


def class_index(name_or_id: int | str, labels: Sequence[str] | None, num_classes: int | None = None) -> int:
    """A class id from an id, a digit string or a class name (case-insensitive)."""
    if isinstance(name_or_id, str):
        text = name_or_id.strip()
        if text.lstrip("-").isdigit():
            name_or_id = int(text)
        else:
            if labels is None:
                raise ConvscopeError(f"class {text!r}: this model has no class names, give a class id")
            lowered = [label.lower() for label in labels]
            if text.lower() in lowered:
                return lowered.index(text.lower())
            close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(labels[lowered.index(c)]) for c in close)}?" if close else ""
            raise ConvscopeError(f"unknown class name {text!r}{hint}")
    limit = num_classes if num_classes is not None else (len(labels) if labels is not None else None)
    index = int(name_or_id)
    if index < 0 or (limit is not None and index >= limit):
        raise ConvscopeError(
            f"class {index} is out of range: the model has {limit} classes (0..{limit - 1})"
            if limit is not None
            else f"class {index} is out of range"
        )
    return index


def resolve_target(target: Target, logits: torch.Tensor, labels: Sequence[str] | None = None) -> torch.Tensor:
    """Turn any accepted target form into class ids ``LongTensor[N]`` on the logits' device.

    Callables are not class ids: use :func:`target_score` for them.
    """
    count, classes = logits.shape[0], logits.shape[-1]
    if target is None:
        return logits.detach().argmax(dim=-1)
    if isinstance(target, (int, str)) and not isinstance(target, bool):
        return torch.full((count,), class_index(target, labels, classes), dtype=torch.long, device=logits.device)
    if isinstance(target, torch.Tensor):
        if target.dtype.is_floating_point or target.ndim > 1:
            raise ConvscopeError(
                f"target tensor must hold integer class ids of shape (N,), got {target.dtype} {tuple(target.shape)}"
            )
        values = target.reshape(-1).tolist()
    elif isinstance(target, Sequence):
        values = list(target)
    else:
        raise ConvscopeError(
            f"target must be a class id, a class name, a list of them, a tensor or a callable; got {type(target).__name__}"
        )
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ConvscopeError(f"{len(values)} targets for {count} images")
    return torch.tensor([class_index(v, labels, classes) for v in values], dtype=torch.long, device=logits.device)


def target_score(target: Target, logits: torch.Tensor, labels: Sequence[str] | None = None) -> torch.Tensor:
    """Score per image ``Tensor[N]`` to differentiate: the target logit, or ``target(logits)``."""
    if callable(target) and not isinstance(target, torch.Tensor):
        score = target(logits)
        if not isinstance(score, torch.Tensor) or score.shape != (logits.shape[0],):
            raise ConvscopeError(f"a target callable must return a tensor of shape ({logits.shape[0]},)")
        return score
    ids = resolve_target(target, logits, labels)
    return logits.gather(1, ids[:, None])[:, 0]
