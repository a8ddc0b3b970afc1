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
    bar_chart([f"{p.label} ({p.class_id})" for p in ranked], [p.probability for p in ranked], chart,
              title=f"{model.name}: top-5")
    return [save_image(image, out / "input.png"), chart]


@tour_step(1, "layer map with receptive fields")
def layers_step(model, image, out: Path) -> list[Path]:
    path = out / "layers.tsv"
    lines = ["layer\ttype\toutput_shape\trf_size\tjump\tstart"]
    for row in layer_table(model, image.shape[-1]):
        field = row.receptive_field
        size = "global" if field is not None and field.size is None else (f"{field.size[0]:g}" if field else "-")
        jump, start = (f"{field.jump[0]:g}", f"{field.start[0]:g}") if field and field.size else ("-", "-")
        shape = "x".join(map(str, row.output_shape)) if row.output_shape else "-"
        lines.append(f"{row.name}\t{row.type}\t{shape}\t{size}\t{jump}\t{start}")
    path.write_text("\n".join(lines) + "\n")
    return [path]
