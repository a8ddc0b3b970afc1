"""The guided tour (``convscope tour``, the README's main job): each feature adds one step.

A step is ``step(model, image, out_dir) -> list of written files``, registered next to its
command with ``@TOUR_STEPS.register(order=30, title="...")`` (or the shorthand
:func:`tour_step`); :func:`run_tour` runs them in ``order`` on a model (the embedded one by
default, or the user's: ``convscope tour -m ...``) and a photo. A step that cannot apply to
the model (a layer or class it does not have, a size it does not take) raises
:class:`~convscope.errors.ConvscopeError`: the tour says so in one line and runs the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConvscopeError
from .registry import Registry

__all__ = ["TOUR_STEPS", "StepOutcome", "TourStep", "run_tour", "steps", "tour_step"]

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


@dataclass(frozen=True)
class StepOutcome:
    """What one step did: the files it wrote, or why it did not apply (``skipped``) or what
    went wrong (``failed``), each one line."""

    step: TourStep
    files: list[Path]
    seconds: float
    skipped: str | None = None
    failed: str | None = None


def run_tour(model, image, out: Path, report: Callable[[StepOutcome], None] | None = None) -> list[StepOutcome]:
    """Run every step on ``model`` and ``image`` (1, 3, H, W), writing into ``out``; each outcome
    is passed to ``report`` as soon as its step ends. A step that raises does not stop the others."""
    import time

    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for step in steps():
        start = time.perf_counter()
        files: list[Path] = []
        skipped = failed = None
        try:
            files = step.run(model, image, out)
        except ConvscopeError as error:
            skipped = str(error).splitlines()[0] if str(error) else type(error).__name__
        except Exception as error:  # a step's bug on this model: named in one line, the tour goes on
            failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        outcome = StepOutcome(step, files, time.perf_counter() - start, skipped, failed)
        outcomes.append(outcome)
        if report is not None:
            report(outcome)
    return outcomes
