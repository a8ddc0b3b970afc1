"""The classic adversarial figure (Goodfellow 2015's panda → gibbon): original | perturbation | adversarial."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ..render import Panel, figure
from .result import AttackResult


def amplified(perturbation: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Map a perturbation (3, H, W) to [0, 1] around grey: ``0.5 + gain · δ``; returns it and the gain."""
    peak = float(perturbation.abs().max())
    gain = 0.5 / peak if peak > 0 else 1.0
    return (0.5 + gain * perturbation).clamp(0, 1), gain


def attack_figure(result: AttackResult, index: int = 0, path: str | Path | None = None) -> Image.Image:
    """Three panels for image ``index``, each titled with the top class and its confidence.

    The perturbation is shown amplified (grey = no change) with its scale and L∞ in 1/255 units.
    """
    original = result.x[index].detach().cpu()
    adversarial = result.x_adv[index].detach().cpu()
    shown, gain = amplified(adversarial - original)
    before = f"{result.name_of(int(result.original_predicted[index]))} {100 * float(result.original_confidence[index]):.1f}%"
    after = f"{result.name_of(int(result.predicted[index]))} {100 * float(result.confidence[index]):.1f}%"
    linf = 255 * float(result.linf[index])
    panels = [Panel(original, f"original: {before}"),
              Panel(shown, f"perturbation ×{gain:.0f} (L∞ {linf:.1f}/255, L2 {float(result.l2[index]):.2f})"),
              Panel(adversarial, f"adversarial: {after}")]
    outcome = "fooled" if bool(result.success[index]) else "not fooled"
    goal = "" if result.target is None else f" → target {result.name_of(int(result.target[index]))}"
    return figure(panels, path, suptitle=f"{result.method}{goal}: {outcome}", panel_size=3.4)
