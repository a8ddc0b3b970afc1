"""The foundation's commands (``models``, ``layers``, ``predict``, ``tour``) and tour steps
(the prediction and the layer map)."""

from __future__ import annotations

__all__ = [
    "app",
    "layers_command",
    "layers_step",
    "models_command",
    "predict_command",
    "prediction_step",
    "tour_command",
]

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import ModelArgs, console, model_options, open_image
from ..tour import tour_step

app = typer.Typer()


@app.command("models")
def models_command() -> None:
    """List the model sources."""
    from ..models import list_models

    table = Table("model", "what it is")
    for name, description in list_models():
        table.add_row(name, description)
    console.print(table)


@app.command("layers")
@model_options(device="cpu", positional=True)
def layers_command(
    size: Annotated[
        Optional[int], typer.Option("--size", help="input side for the shapes (default: the model's input size)")
    ] = None,
    match: Annotated[str, typer.Option("--match", help="only names containing this text")] = "",
    model: ModelArgs = None,
) -> None:
    """Every layer: dotted name, type, output shape, receptive field (size, jump, start), why it is unusable.

    The last column says why spatial methods (CAMs, top units, channel visualization) cannot use a
    layer: it never runs in the forward pass, or its output has no spatial map."""
    from ..layers import LAYER_COLUMNS, layer_table

    network = model.open()
    side = size or network.input_size
    height, width = (side, side) if isinstance(side, int) else side
    table = Table(*LAYER_COLUMNS, title=f"{network.name} at {height}x{width}")
    for row in layer_table(network, side):
        if match in row.name:
            table.add_row(*row.cells())
    console.print(table)


@app.command("predict")
@model_options
def predict_command(
    images: Annotated[list[str], typer.Argument(help="image files or sample:NAME")],
    topk: Annotated[int, typer.Option("--topk", "-k")] = 5,
    model: ModelArgs = None,
) -> None:
    """Top-k classes of each image (loaded at the model's input size with its preprocessing)."""
    from ..predictions import predict

    network = model.open()
    for spec in images:
        ranked = predict(network, open_image(spec, network), topk)[0]
        table = Table("class id", "name", "probability", title=f"{spec} ({network.name})")
        for row in ranked:
            table.add_row(str(row.class_id), row.label, f"{row.probability:.4f}")
        console.print(table)


@app.command("tour")
@model_options
def tour_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the pictures")] = Path("tour"),
    image: Annotated[str, typer.Option("--image", help="photo to explore")] = "sample:chelsea",
    model: ModelArgs = None,
) -> None:
    """A tour of everything convscope does, on one model and one photo: writes pictures to OUT."""
    from ..registry import import_submodules
    from ..tour import run_tour

    import_submodules(__package__)  # the tour steps live next to their commands
    network = model.open()
    picture = open_image(image, network)

    def show(outcome) -> None:
        took = f"({outcome.seconds:.1f} s)"
        if outcome.skipped is not None:
            console.print(
                f"[yellow]-[/yellow] {outcome.step.title}: does not apply to {network.name}: {outcome.skipped}"
            )
        elif outcome.failed is not None:
            console.print(f"[red]✗[/red] {outcome.step.title} {took}: failed: {outcome.failed}")
        else:
            console.print(f"[green]✓[/green] {outcome.step.title} {took}: " + ", ".join(str(f) for f in outcome.files))

    outcomes = run_tour(network, picture, out, show)
    written = sum(len(o.files) for o in outcomes)
    skipped = sum(o.skipped is not None for o in outcomes)
    failed = sum(o.failed is not None for o in outcomes)
    console.print(
        f"\nWrote {written} files to {out.resolve()}"
        + (f"; {skipped} steps do not apply to this model" if skipped else "")
        + (f"; {failed} failed" if failed else "")
    )
    if failed:
        raise typer.Exit(1)


@tour_step(0, "prediction (top-5)")
def prediction_step(model, image, out: Path) -> list[Path]:
    from ..images import save_image
    from ..predictions import predict
    from ..render import bar_chart

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
    from ..layers import layer_table

    path = out / "layers.tsv"
    lines = ["layer\ttype\toutput_shape\trf_size\tjump\tstart"]
    lines += ["\t".join(row.cells()) for row in layer_table(model, image.shape[-1])]
    path.write_text("\n".join(lines) + "\n")
    return [path]
