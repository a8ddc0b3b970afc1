"""The classic adversarial figure (Goodfellow 2015's panda → gibbon): original | perturbation | adversarial."""

from __future__ import annotations

__all__ = ["amplified", "attack_figure", "attack_pictures", "display_budget", "perturbation_picture"]

from pathlib import Path

import torch
from PIL import Image

from ..render import Panel, figure
from .registry import ATTACKS
from .result import AttackResult


def amplified(perturbation: torch.Tensor, budget: float | None = None) -> tuple[torch.Tensor, float]:
    """Map a perturbation (3, H, W) to [0, 1] around grey: ``0.5 + gain · δ``; returns it and the gain.

    ``gain = 0.5 / budget`` (the full L∞ budget maps to black/white, as Goodfellow et al. 2015
    draw it), or ``0.5 / peak |δ|`` without a budget.
    """
    peak = budget or float(perturbation.abs().max())
    gain = 0.5 / peak if peak > 0 else 1.0
    return (0.5 + gain * perturbation).clamp(0, 1), gain


def display_budget(result: AttackResult) -> float | None:
    """The one rule for drawing a perturbation: scaled by ``eps`` for L∞-bounded attacks (every
    pixel may move by eps), by its own peak otherwise (L2/L0 budgets and unbounded attacks)."""
    if result.method in ATTACKS and ATTACKS.meta(result.method)["norm"] == "linf" and result.eps:
        return float(result.eps)
    return None


def perturbation_picture(result: AttackResult, index: int = 0) -> tuple[torch.Tensor, float]:
    """Image ``index``'s perturbation (3, H, W) drawn around grey (:func:`amplified` by
    :func:`display_budget`) and its gain; used by the figure, the report and the web app."""
    delta = (result.x_adv[index] - result.x[index]).detach().cpu()
    return amplified(delta, display_budget(result))


def budget_text(result: AttackResult) -> str:
    """The attack's budget as it is usually written: ``ε = 4/255`` (L∞), ``ε = 0.5`` (L2), or ""."""
    if not result.eps:
        return ""
    norm = ATTACKS.meta(result.method)["norm"] if result.method in ATTACKS else ""
    return f"ε = {255 * float(result.eps):.3g}/255" if norm == "linf" else f"{norm} ε = {float(result.eps):.3g}"


def attack_figure(
    result: AttackResult, index: int = 0, path: str | Path | None = None, model_name: str | None = None
) -> Image.Image:
    """Three panels for image ``index``, each titled with the top class and its confidence.

    The perturbation is shown amplified (grey = no change) with its scale and L∞ in 1/255 units.
    """
    original = result.x[index].detach().cpu()
    adversarial = result.x_adv[index].detach().cpu()
    shown, gain = perturbation_picture(result, index)
    before = (
        f"{result.name_of(int(result.original_predicted[index]))} {100 * float(result.original_confidence[index]):.1f}%"
    )
    after = f"{result.name_of(int(result.predicted[index]))} {100 * float(result.confidence[index]):.1f}%"
    linf = 255 * float(result.linf[index])
    panels = [
        Panel(original, f"original: {before}"),
        Panel(shown, f"perturbation ×{gain:.0f}, grey = 0 (L∞ {linf:.1f}/255, L2 {float(result.l2[index]):.2f})"),
        Panel(adversarial, f"adversarial: {after}"),
    ]
    outcome = "fooled" if bool(result.success[index]) else "not fooled"
    goal = "" if result.target is None else f" → target {result.name_of(int(result.target[index]))}"
    budget = budget_text(result)
    title = (
        f"{model_name + ': ' if model_name else ''}{result.method}{goal}{', ' + budget if budget else ''}: {outcome}"
    )
    return figure(panels, path, suptitle=title, panel_size=3.4)


def attack_pictures(result, eps: float | None = None) -> list[Image.Image]:
    """Original | perturbation | adversarial pictures of the first image of an attack result.

    The perturbation is drawn by :func:`convscope.attacks.figure.perturbation_picture` (grey =
    unchanged; for L∞ attacks the full budget maps to black/white, the way Goodfellow et al.
    (2015) draw it amplified), the same as the CLI's figure. ``eps`` is unused (kept for callers).
    """
    from ..sections import picture_of

    shown, _ = perturbation_picture(result, 0)
    return [picture_of(result.x[0]), picture_of(shown), picture_of(result.x_adv[0])]
