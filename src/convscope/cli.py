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
from typing import Annotated, List

import typer
from rich.table import Table

from . import commands
from .cli_common import (ArchOption, DeviceOption, ModelOption, TrustOption, WeightsOption, console, err_console,
                         open_image, open_model)
from .errors import ConvscopeError
from .models import DEFAULT_MODEL, list_models

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
def layers_command(
    model: Annotated[str, typer.Argument(help="model name or file")] = DEFAULT_MODEL,
    size: Annotated[int, typer.Option("--size", help="input side for the shapes")] = 224,
    weights: WeightsOption = None, arch: ArchOption = None, trust: TrustOption = False, device: DeviceOption = "cpu",
    match: Annotated[str, typer.Option("--match", help="only names containing this text")] = "",
) -> None:
    """Every layer: dotted name, type, output shape and receptive field (size, jump, start)."""
    from .layers import layer_table

    network = open_model(model, weights, arch, trust, device)
    table = Table("layer", "type", "output shape", "RF size", "jump", "start", title=f"{network.name} at {size}x{size}")
    for row in layer_table(network, size):
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
def predict_command(
    images: Annotated[List[str], typer.Argument(help="image files or sample:NAME")],
    model: ModelOption = DEFAULT_MODEL, topk: Annotated[int, typer.Option("--topk", "-k")] = 5,
    weights: WeightsOption = None, arch: ArchOption = None, trust: TrustOption = False, device: DeviceOption = "auto",
) -> None:
    """Top-k classes of each image."""
    from .predictions import predict

    network = open_model(model, weights, arch, trust, device)
    for spec in images:
        ranked = predict(network, open_image(spec, network), topk)[0]
        table = Table("class id", "name", "probability", title=f"{spec} ({network.name})")
        for row in ranked:
            table.add_row(str(row.class_id), row.label, f"{row.probability:.4f}")
        console.print(table)


@app.command("tour")
def tour_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the pictures")] = Path("tour"),
    image: Annotated[str, typer.Option("--image", help="photo to explore")] = "sample:chelsea",
    model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto",
) -> None:
    """A tour of everything convscope does, on one model and one photo: writes pictures to OUT."""
    from .tour import steps

    network = open_model(model, device=device)
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
        importlib.import_module(f"{commands.__name__}.{module.name}").register(app)


_discover()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def main() -> None:
    """Entry point: run the app; bad input -> one line on stderr, exit 2."""
    import typer.main

    from .cli_checks import harden

    warnings.showwarning = _show_warning
    command = harden(typer.main.get_command(app))
    if os.environ.get("CONVSCOPE_DEBUG"):
        command.main(prog_name="convscope")
        return
    try:
        command.main(prog_name="convscope", standalone_mode=False)
    except ConvscopeError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except (typer.Exit, typer.Abort) as done:
        sys.exit(getattr(done, "exit_code", 130))
    except Exception as error:
        usage = _usage_error(error)
        if usage is not None:
            sys.exit(usage)
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            err_console.print(f"[red]error:[/red] {error}", highlight=False)
            sys.exit(2)
        err_console.print(f"[red]internal error:[/red] {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
                          "(set CONVSCOPE_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(1)


def _usage_error(error: Exception) -> int | None:
    """Print a click usage error (typer's vendored click or click itself) as one line; its exit code."""
    import click

    kinds = tuple(k for k in (getattr(typer, "TyperException", None), click.exceptions.ClickException) if k)
    if isinstance(error, click.exceptions.Abort):
        return 130
    if not isinstance(error, kinds) or not hasattr(error, "format_message"):
        return None
    if type(error).__name__ == "NoArgsIsHelpError":  # bare `convscope` or a group without a command: the help
        error.show()
        return error.exit_code
    context = getattr(error, "ctx", None)
    hint = f" (see '{context.command_path} --help')" if context is not None else ""
    message = " ".join(error.format_message().split())
    err_console.print(f"[red]error:[/red] {message}{hint}", highlight=False)
    return getattr(error, "exit_code", 2) or 2

if __name__ == "__main__":
    main()
