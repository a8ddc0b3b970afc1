"""What the web app can compute, read from the feature packages present in this build.

Each family is offered only when its package imports (attribution, attacks, optimize), and
its method names come from that family's registry, so the page's menus grow as features
land. Every function here expects the caller to hold the model gate.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
from PIL import Image

from ..predictions import predict
from ..render import overlay


def _module(name: str):
    try:
        return importlib.import_module(f"convscope.{name}")
    except ImportError:
        return None


def attribution_methods() -> list[str]:
    """Registered attribution methods (empty when ``convscope.attribution`` is absent)."""
    attribution = _module("attribution")
    registry = getattr(attribution, "ATTRIBUTIONS", None) or getattr(attribution, "METHODS", None)
    return registry.names() if registry is not None else []


def explain(model, x: torch.Tensor, method: str, target: int, layer: str | None) -> tuple[Image.Image, str | None]:
    """The attribution map of ``target`` drawn over the image, and the layer used (CAM methods)."""
    import convscope

    options = {"layer": layer} if layer is not None else {}
    heat = convscope.attribute(model, x, target, method=method, **options)
    return overlay(x[0], heat[0]), layer


def attack_methods() -> list[str]:
    """Registered attacks that take an ``eps`` budget (empty when ``convscope.attacks`` is absent)."""
    attacks = _module("attacks")
    return [name for name in attacks.list_attacks() if name in ("fgsm", "bim", "pgd")] if attacks else []


def attack(model, x: torch.Tensor, method: str, eps: float, encode: Callable[[Image.Image], str]) -> dict[str, Any]:
    """Original | perturbation | adversarial, with the top-5 before and after."""
    from ..attacks import attack as run_attack
    from ..report import attack_pictures

    result = run_attack(model, x, method=method, eps=eps, seed=0)
    pictures = attack_pictures(result, eps)
    return {"original": encode(pictures[0]), "perturbation": encode(pictures[1]), "adversarial": encode(pictures[2]),
            "before": _ranked(model, x), "after": _ranked(model, result.x_adv), "success": bool(result.success[0]),
            "linf": float(result.linf[0]), "method": method, "eps": eps}


def _ranked(model, x: torch.Tensor) -> list[dict[str, Any]]:
    return [{"class_id": p.class_id, "label": p.label, "probability": p.probability} for p in predict(model, x, 5)[0]]


def job_kinds() -> list[str]:
    """Long jobs this build offers: the full report always."""
    return ["report"]


def job(kind: str, model, x: torch.Tensor, image_name: str, steps: int | None = None, target: int | None = None):
    """The work function of a long job (see :class:`~convscope.server.jobs.JobRunner`)."""
    if kind == "report":
        def work(report: Callable[[float, str], None]) -> dict:
            from ..report import build_report

            built = build_report(model, x, image_name,
                                 on_section=lambda name, done, total: report(done / total, f"section {name}"))
            return {"html": built.html(), "seconds": round(built.seconds, 2)}

        return work
    raise ValueError(f"unknown job kind {kind!r}")
