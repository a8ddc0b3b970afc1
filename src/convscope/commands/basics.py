"""Tour steps of the foundation: the prediction and the layer map."""

from __future__ import annotations

from pathlib import Path

from ..images import save_image
from ..layers import layer_table
from ..predictions import predict
from ..render import bar_chart
from ..tour import tour_step


@tour_step(0, "prediction (top-5)")
def prediction_step(model, image, out: Path) -> list[Path]:
    ranked = predict(model, image, 5)[0]
    chart = out / "prediction.png"
    bar_chart(
        [f"{p.label} ({p.class_id})" for p in ranked],
        [p.probability for p in ranked],
        chart,
        title=f"{model.name}: top-5",
    )
    return [save_image(image, out / "input.png"), chart]


@tour_step(1, "layer map with receptive fields")
def layers_step(model, image, out: Path) -> list[Path]:
    path = out / "layers.tsv"
    lines = ["layer\ttype\toutput_shape\trf_size\tjump\tstart"]
    lines += ["\t".join(row.cells()) for row in layer_table(model, image.shape[-1])]
    path.write_text("\n".join(lines) + "\n")
    return [path]
