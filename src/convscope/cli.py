"""The ``convscope`` command line: thin commands over the Python API.

Core commands live here; each feature adds its own in ``convscope/commands/NAME.py``
(a ``register(app)`` function), found automatically. Bad input prints one line and
exits 2; set ``CONVSCOPE_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from . import commands
from .cli_common import ModelArgs, console, err_console, model_options, open_image
from .errors import ConvscopeError
from .models import list_models

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="convscope: what a CNN has learned, why it predicts, how it can be fooled.")


@app.command("models")
def models_command() -> None:
    """List the model sources."""
    table = Table("model", "what it is")
    for name, description in list_models():
        table.add_row(name, description)
    console.print(table)


@app.command("layers")
@model_options(device="cpu", positional=True)
def layers_command(
    size: Annotated[Optional[int], typer.Option("--size", help="input side for the shapes (default: the model's input size)")] = None,
    match: Annotated[str, typer.Option("--match", help="only names containing this text")] = "",
    model: ModelArgs = None,
) -> None:
    """Every layer: dotted name, type, output shape and receptive field (size, jump, start)."""
    from .layers import layer_table

    network = model.open()
    side = size or network.input_size
    height, width = (side, side) if isinstance(side, int) else side
    table = Table("layer", "type", "output shape", "RF size", "jump", "start", title=f"{network.name} at {height}x{width}")
    for row in layer_table(network, side):
        if match not in row.name:
            continue
        field = row.receptive_field
        shape = "x".join(map(str, row.output_shape)) if row.output_shape else "-"
        if field is None:
            cells = ("-", "-", "-")
        elif field.size is None:
            cells = ("global", "-", "-")
        else:
            cells = tuple(_pair_text(v) for v in (field.size, field.jump, field.start))
        table.add_row(row.name, row.type, shape, *cells)
    console.print(table)


def _pair_text(pair) -> str:
    text = [f"{v:g}" for v in pair]
    return text[0] if text[0] == text[1] else "x".join(text)


@app.command("predict")
@model_options
def predict_command(
    images: Annotated[list[str], typer.Argument(help="image files or sample:NAME")],
    topk: Annotated[int, typer.Option("--topk", "-k")] = 5,
    model: ModelArgs = None,
) -> None:
    """Top-k classes of each image (loaded at the model's input size with its preprocessing)."""
    from .predictions import predict

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
    from .tour import steps

    network = model.open()
    picture = open_image(image, network)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for step in steps():
        start = time.perf_counter()
        files = step.run(network, picture, out)
        written += files
        console.print(f"[green]✓[/green] {step.title} ({time.perf_counter() - start:.1f} s): "
                      + ", ".join(str(f) for f in files))
    console.print(f"\nWrote {len(written)} files to {out.resolve()}")


def _discover() -> None:
    for module in pkgutil.iter_modules(commands.__path__):
        command_module = importlib.import_module(f"{commands.__name__}.{module.name}")
        if hasattr(command_module, "register"):  # a module may only add tour steps (basics)
            command_module.register(app)


_discover()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def main() -> None:
    """Entry point: run the app; bad input -> one line on stderr, exit 2."""
    warnings.showwarning = _show_warning
    if os.environ.get("CONVSCOPE_DEBUG"):
        app()
        return
    try:
        app(standalone_mode=False)
    except ConvscopeError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as error:  # click usage errors carry their own message and code
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Abort):
            sys.exit(130)
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            err_console.print(f"[red]error:[/red] {error}", highlight=False)
            sys.exit(2)
        err_console.print(f"[red]internal error:[/red] {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
                          "(set CONVSCOPE_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
