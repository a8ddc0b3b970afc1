"""The optimization package's report sections: DeepDream and a class visualization (their
settings are also the web app's job defaults)."""

from __future__ import annotations

__all__ = [
    "CLASS_VIS_SIZE",
    "CLASS_VIS_STEPS",
    "DREAM_LAYER",
    "DREAM_OCTAVES",
    "DREAM_STEPS",
    "class_visualization_section",
    "dream_section",
]

from ..sections import Figure, Section, picture_of, report_section
from ..targets import class_name

DREAM_LAYER, DREAM_OCTAVES, DREAM_STEPS = "blocks.4", 2, 8
CLASS_VIS_SIZE, CLASS_VIS_STEPS = 112, 32


@report_section(60, "dream")
def dream_section(model, image, context) -> Section | None:
    """DeepDream (Mordvintsev et al. 2015) on the input."""
    from . import dream

    result = dream(model, image, DREAM_LAYER, octaves=DREAM_OCTAVES, steps=DREAM_STEPS, progress=False)
    return Section(
        "DeepDream",
        figures=[Figure(picture_of(image), "input"), Figure(picture_of(result.image), f"dreamed at {DREAM_LAYER}")],
        note=f"{DREAM_OCTAVES} octaves x {DREAM_STEPS} steps of normalized gradient ascent on the layer's energy",
    )


@report_section(61, "class_visualization")
def class_visualization_section(model, image, context) -> Section | None:
    """A class visualization (Simonyan et al. 2014; Olah et al. 2017 parameterization) of the top class."""
    from . import visualize_class

    target = context.get("target", 0)
    result = visualize_class(model, target, size=CLASS_VIS_SIZE, steps=CLASS_VIS_STEPS, progress=False)
    import torch

    label = class_name(getattr(model, "labels", None), target)
    with torch.no_grad():  # how sure the model is that the picture is the class (the number a reader asks for)
        probability = float(model(result.image[:1]).softmax(dim=-1)[0, target])
    caption = f"“{label}” ({target}): p = {probability:.3f}, logit {float(result.scores[0]):.1f}"
    return Section(
        "Class visualization",
        figures=[Figure(picture_of(result.image[0]), caption)],
        note=f"{CLASS_VIS_STEPS} Adam steps at {CLASS_VIS_SIZE} px, decorrelated Fourier parameterization with jitter/scale/rotate",
    )
