"""``convscope report``: the one-file HTML report of one photo (and its tour step)."""

from __future__ import annotations

__all__ = ["app", "report_command", "report_step"]

from pathlib import Path
from typing import Annotated

import typer

from .common import ModelArgs, console, model_options, open_image, output_path
from ..tour import tour_step

app = typer.Typer()


@app.command("report")
@model_options
def report_command(
    image: Annotated[str, typer.Argument(help="image file or sample:NAME")] = "sample:chelsea",
    model: ModelArgs = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="the HTML file to write")] = Path("report.html"),
) -> None:
    """One self-contained HTML file: prediction, attribution maps, sanity check, an adversarial
    example, DeepDream, a class visualization and the timings."""
    from ..report import write_report

    network = model.open()
    path = write_report(network, open_image(image, network), output_path(out), image_name=image, progress=True)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@tour_step(100, "a quick one-file HTML report (the full one: make demo / convscope report)")
def report_step(model, image, out: Path) -> list[Path]:
    from ..report import build_report

    quick = build_report(model, image, "sample:chelsea", sections=["prediction", "layers", "attack"])
    return [quick.save(out / "report-quick.html")]
