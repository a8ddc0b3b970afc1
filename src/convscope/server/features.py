"""What the web app can compute: the method names come from each family's registry (and
its metadata: the attacks marked ``interactive``, the attribution methods' ``quick`` settings
and ``display`` scaling), so the page's menus grow as methods are registered. Every function
here expects the caller to hold the model gate.
"""

from __future__ import annotations

__all__ = ["attack", "attack_methods", "attribution_methods", "explain", "job", "job_kinds", "watched"]

from typing import Any, Callable

import torch
from PIL import Image
from torch import nn

from ..models import ImageClassifier
from ..render import overlay_with_bar
from ..targets import class_name
from .served import ranked


def attribution_methods() -> list[str]:
    """The registered attribution methods."""
    from ..attribution import METHODS

    return METHODS.names()


def explain(model, x: torch.Tensor, method: str, target: int, layer: str | None) -> tuple[Image.Image, str | None]:
    """The attribution map of ``target`` drawn over the image with a colour bar in its units, and
    the layer used (CAM methods; other methods ignore ``layer``). Slow methods use the report's
    quick settings."""
    from ..attribution import attribute, display_mode, display_unit, method_options, quick_options
    from ..layers import default_cam_layer

    accepted = method_options(method)
    options = quick_options(method)
    if "layer" in accepted:
        options["layer"] = layer = layer or default_cam_layer(model, x.shape[-1])
    else:
        layer = None
    heat = attribute(model, x, target, method=method, **options)
    unit = display_unit(method, options)
    return overlay_with_bar(x[0], heat[0], mode=display_mode(method), unit=unit), layer


def attack_methods() -> list[str]:
    """Registered L∞ attacks quick enough for the page (the registry's ``interactive``)."""
    from ..attacks import ATTACKS

    return ATTACKS.names(interactive=True, uses_eps=True)


def attack(model, x: torch.Tensor, method: str, eps: float, encode: Callable[[Image.Image], str]) -> dict[str, Any]:
    """Original | perturbation | adversarial, with the top-5 before and after."""
    from ..attacks import attack as run_attack
    from ..attacks.figure import attack_pictures

    result = run_attack(model, x, method=method, eps=eps, seed=0)
    pictures = attack_pictures(result)
    return {
        "original": encode(pictures[0]),
        "perturbation": encode(pictures[1]),
        "adversarial": encode(pictures[2]),
        "before": ranked(model, x, 5),
        "after": ranked(model, result.x_adv, 5),
        "success": bool(result.success[0]),
        "linf": float(result.linf[0]),
        "method": method,
        "eps": eps,
    }


def job_kinds() -> list[str]:
    """Long jobs the app offers: the full report, DeepDream and class visualization."""
    return ["report", "dream", "visualize_class"]


class _Watch(nn.Module):
    """Delegates to ``inner`` and calls ``tick()`` before each forward pass."""

    def __init__(self, inner: nn.Module, tick: Callable[[], None]):
        super().__init__()
        self.inner, self.tick = inner, tick

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tick()
        return self.inner(x)


def watched(model: ImageClassifier, expected: int, report: Callable[[float, str], None]) -> ImageClassifier:
    """The same network (same weights, same layer names) whose every forward pass reports
    progress as passes / ``expected``: the optimization loops need no callback of their own,
    and a cancelled job stops at its next forward pass."""
    passes = 0

    def tick() -> None:
        nonlocal passes
        passes += 1
        report(passes / expected, f"step {passes}/{expected}")

    view = ImageClassifier(
        model.network,
        labels=model.labels,
        name=model.name,
        input_size=model.input_size,
        fixed_size=model.fixed_size,  # a 32 x 32 network still gets 32 x 32 (resized in forward)
        preprocess=model.preprocess,
    )
    view.normalize = _Watch(model.normalize, tick)
    return view


def job(
    kind: str,
    model: ImageClassifier,
    x: torch.Tensor,
    image_name: str,
    steps: int | None = None,
    target: int | None = None,
) -> Callable[[Callable[[float, str], None]], dict]:
    """The work function of a long job (see :class:`~convscope.server.jobs.JobRunner`)."""
    from ..optimize import report_sections as defaults
    from ..report import build_report

    if kind == "report":

        def work(report: Callable[[float, str], None]) -> dict:
            built = build_report(
                model, x, image_name, on_section=lambda name, done, total: report(done / total, f"section {name}")
            )
            return {"html": built.html(), "seconds": round(built.seconds, 2)}
    elif kind == "dream":

        def work(report: Callable[[float, str], None]) -> dict:
            from ..optimize import dream

            count = steps or defaults.DREAM_STEPS
            layer = defaults.dream_layer(model, tuple(x.shape[-2:]))
            result = dream(
                watched(model, count * defaults.DREAM_OCTAVES, report),
                x,
                layer,
                octaves=defaults.DREAM_OCTAVES,
                steps=count,
                progress=False,
            )
            return {"image": _data_uri(result.image[0]), "layer": layer}
    elif kind == "visualize_class":

        def work(report: Callable[[float, str], None]) -> dict:
            from ..optimize import visualize_class
            from ..predictions import predict

            count = steps or defaults.CLASS_VIS_STEPS
            goal = target if target is not None else predict(model, x, 1)[0][0].class_id
            result = visualize_class(
                watched(model, count, report), goal, size=defaults.CLASS_VIS_SIZE, steps=count, progress=False
            )
            return {"image": _data_uri(result.image[0]), "class_id": goal, "label": class_name(model.labels, goal)}
    else:
        raise ValueError(f"unknown job kind {kind!r}")
    return work


def _data_uri(image: torch.Tensor) -> str:
    from ..sections import Figure, picture_of

    return Figure(picture_of(image)).data_uri
