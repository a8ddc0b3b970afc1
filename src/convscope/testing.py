"""State checks for tests (convscope's and users'): prove a method left the model as it was.

The test-suite's own helpers (running the CLI in-process, importing the reference
``imagecorruptions``) live in ``tests/helpers.py``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .hooks import hook_count


@dataclass(frozen=True)
class ModelState:
    """What a method must not change: weights, hooks, ``training`` and ``requires_grad`` flags."""

    weights: tuple[float, ...]
    hooks: int
    training: tuple[bool, ...]
    requires_grad: tuple[bool, ...]
    grads: tuple[bool, ...]


def model_state(model: nn.Module) -> ModelState:
    """A fingerprint of the model's state (weights summed per tensor, to float precision)."""
    with torch.no_grad():
        weights = tuple(
            float(t.double().sum()) + float(t.double().abs().sum())
            for t in model.state_dict().values()
            if t.is_floating_point()
        )
    return ModelState(
        weights,
        hook_count(model),
        tuple(m.training for m in model.modules()),
        tuple(p.requires_grad for p in model.parameters()),
        tuple(p.grad is not None for p in model.parameters()),
    )


def assert_untouched(model: nn.Module, before: ModelState) -> None:
    """Raise AssertionError naming what changed since ``before = model_state(model)``."""
    after = model_state(model)
    for field in ("hooks", "training", "requires_grad", "grads", "weights"):
        assert getattr(after, field) == getattr(before, field), f"the method changed the model's {field}"


__all__ = ["ModelState", "assert_untouched", "model_state"]
