"""The guided tour (``convscope tour``, the README's main job): each feature adds one step.

A step is ``step(model, image, out_dir) -> list of written files``, registered with
:func:`tour_step`; the tour runs them in ``order`` on the embedded model and a bundled photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

TourStepFn = Callable[..., list[Path]]


@dataclass(frozen=True)
class TourStep:
    order: int
    title: str
    run: TourStepFn


TOUR_STEPS: dict[str, TourStep] = {}


def tour_step(order: int, title: str) -> Callable[[TourStepFn], TourStepFn]:
    """Register a tour step (``order`` decides the sequence)."""

    def register(function: TourStepFn) -> TourStepFn:
        TOUR_STEPS[function.__name__] = TourStep(order, title, function)
        return function

    return register


def steps() -> list[TourStep]:
    return sorted(TOUR_STEPS.values(), key=lambda step: step.order)
