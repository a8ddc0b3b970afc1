"""The optimization package's report sections: DeepDream and a class visualization (their
settings are also the web app's job defaults)."""

from __future__ import annotations

__all__ = [
    "CLASS_VIS_SIZE",
    "CLASS_VIS_STEPS",
    "DREAM_DEPTH",
    "DREAM_OCTAVES",
    "DREAM_STEPS",
    "class_visualization_section",
    "dream_layer",
    "dream_section",
]

from ..sections import Figure, Section, picture_of, report_section
from ..targets import class_name

#: DeepDream's layer is the stage at two thirds of the network's depth (blocks.4 on the embedded model)
DREAM_DEPTH, DREAM_OCTAVES, DREAM_STEPS = 2 / 3, 2, 8
CLASS_VIS_SIZE, CLASS_VIS_STEPS = 112, 32


def dream_layer(model, size: int | tuple[int, int] = 224) -> str:
    """The layer the report and the web app dream at: :func:`~convscope.layers.layer_at_depth` at
    :data:`DREAM_DEPTH`."""
    from ..layers import layer_at_depth

    return layer_at_depth(model, DREAM_DEPTH, size).name


@report_section(60, "dream")
def dream_section(model, image, context) -> Section | None:
    """DeepDream (Mordvintsev et al. 2015) on the input."""
    from . import dream

    layer = dream_layer(model, tuple(image.shape[-2:]))
    result = dream(model, image, layer, octaves=DREAM_OCTAVES, steps=DREAM_STEPS, progress=False)
    energy = f"{result.histories[0][0]:.3g} → {result.histories[-1][-1]:.3g}"
    return Section(
        "DeepDream",
        figures=[
            Figure(picture_of(image), "input"),
            Figure(picture_of(result.image), f"dreamed at {layer}: layer energy {energy}"),
        ],
        note=f"{DREAM_OCTAVES} octaves x {DREAM_STEPS} steps of normalized gradient ascent on the energy of "
        f"{layer}, the stage at {DREAM_DEPTH:.2g} of the network's depth",
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
