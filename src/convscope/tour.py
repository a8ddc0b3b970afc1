"""The guided tour (``convscope tour``, the README's main job): each feature adds one step.

A step is ``step(model, image, out_dir) -> list of written files``, registered next to its
command with ``@TOUR_STEPS.register(order=30, title="...")`` (or the shorthand
:func:`tour_step`); the tour runs them in ``order`` on the embedded model and a bundled photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .registry import Registry

__all__ = ["TOUR_STEPS", "TourStep", "steps", "tour_step"]

TourStepFn = Callable[..., list[Path]]

TOUR_STEPS: Registry[TourStepFn] = Registry("tour step", order=0, title="")
"""Name -> step function; metadata ``order`` (the sequence) and ``title`` (printed by the tour)."""


@dataclass(frozen=True)
class TourStep:
    order: int
    title: str
    run: TourStepFn


def tour_step(order: int, title: str) -> Callable[[TourStepFn], TourStepFn]:
    """Register a tour step (``order`` decides the sequence): ``TOUR_STEPS.register(order=..., title=...)``."""
    return TOUR_STEPS.register(order=order, title=title)


def steps() -> list[TourStep]:
    """The registered steps in tour order."""
    entries = sorted(TOUR_STEPS.entries(), key=lambda entry: entry.meta["order"])
    return [TourStep(entry.meta["order"], entry.meta["title"], entry.function) for entry in entries]
