"""The ``convscope`` command line: the app, its lazy command table and :func:`main`.

The commands live in ``convscope/commands/NAME.py``, defined at module level on that
module's ``app``. Bad input prints one line and exits 2; set ``CONVSCOPE_DEBUG=1`` to see
tracebacks.

Start-up: ``convscope --help`` imports no torch. The commands are listed from
:data:`COMMANDS` (name -> module, one-line help; a test keeps it equal to what the modules
define) and a command's module is imported only when that command runs or shows its help;
the modules import torch inside the command bodies, so a bad argument is rejected before.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Annotated, Optional

import typer

try:  # typer >= 0.17 runs on its own copy of click
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer
    import click
from typer.core import TyperCommand, TyperGroup

from .commands.common import err_console
from .errors import ConvscopeError

__all__ = ["COMMANDS", "all_commands", "app", "feature_commands", "main"]

#: command -> (module in convscope.commands, the one-line help ``convscope --help`` shows).
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("basics", "List the model sources."),
    "layers": (
        "basics",
        "Every layer: dotted name, type, output shape, receptive field (size, jump, start), why it is unusable.",
    ),
    "predict": ("basics", "Top-k classes of each image (loaded at the model's input size with its preprocessing)."),
    "tour": ("basics", "A tour of everything convscope does, on one model and one photo: writes pictures to OUT."),
    "attack": ("attacks", "Attack one image and draw original | perturbation (amplified) | adversarial."),
    "attack-eval": (
        "attacks",
        "Clean accuracy, robust accuracy (95 % Wilson interval) and attack success rate over a dataset.",
    ),
    "fooling": ("attacks", "Evolve fooling images (Nguyen 2015) for a list of classes and draw the gallery."),
    "patch": ("attacks", "Adversarial patch (Brown 2017): train one round sticker that turns photos into TARGET."),
    "transfer-matrix": (
        "attacks",
        "Attack every model (source) and score every model (target) on the results: a transfer heatmap and CSV.",
    ),
    "weights": ("dissect", "A layer's filters (first layer in colour) or an MLP's weight rows as an image grid."),
    "examples": ("dissect", "Top-k dataset examples per channel with receptive-field patches (Zeiler & Fergus 2014)."),
    "atlas": ("dissect", "A static HTML neuron atlas (one page per channel) of LAYERs on DATA; open OUT/index.html."),
    "evaluate-explanations": (
        "evaluate",
        "Score attribution methods with explanation metrics over a dataset: mean and 95 % CI per cell.",
    ),
    "explain": ("explain", "Attribution map(s) of one image, drawn over it with the class name and probability."),
    "sanity": (
        "explain",
        "Model-parameter randomization test (Adebayo 2018): similarity of each map as layers are randomized.",
    ),
    "report": (
        "report",
        "One self-contained HTML file: prediction, attribution maps, sanity check, an adversarial example, "
        "DeepDream, a class visualization and the timings.",
    ),
    "corrupt": ("robustness", "Apply one ImageNet-C corruption (or draw all 19) to an image."),
    "robustness": (
        "robustness",
        "Per-corruption errors, CE, mCE and relative mCE (Hendrycks & Dietterich 2019), CSV and plot.",
    ),
    "train": (
        "robustness",
        "Standard or adversarial training (PGD: Madry 2018; fgsm-rs: Wong 2020; TRADES), evaluated with AutoAttack; "
        "runs under torchrun (DDP).",
    ),
    "defenses": (
        "robustness",
        "Defenses (input transformations, stochastic activation pruning) against naive and adaptive (BPDA/EOT) PGD.",
    ),
    "shape-bias": ("robustness", "Shape vs texture bias on cue-conflict images (Geirhos et al."),
    "heatmap": (
        "segmentation",
        "Run the classifier as a fully-convolutional net on a large image: a map of one class's probability.",
    ),
    "segment": ("segmentation", "Segmentation networks: train, predict, evaluate (FCN-32s/16s/8s, U-Net, SegNet)."),
    "serve": (
        "serve",
        "A local web app: upload or pick a photo, see predictions, attributions, attacks, layers and long jobs.",
    ),
    "visualize": (
        "synthesis",
        "Activation maximization: images that excite a channel (or several, as a grid) or a class.",
    ),
    "dream": ("synthesis", "DeepDream: amplify what LAYER sees in the photo (octaves, jitter)."),
    "invert-text": (
        "synthesis",
        "Inverting CLIP: render an image whose CLIP embedding points at a text prompt (needs open_clip).",
    ),
    "invert": (
        "synthesis",
        "Feature inversion (Mahendran & Vedaldi): reconstruct the photo from a layer's representation.",
    ),
    "stylize": ("synthesis", "Neural style transfer (Gatys et al.): CONTENT painted with the textures of STYLE."),
    "finetune": (
        "transfer",
        "Train a new head on DATA (features), fine-tune everything, or train from scratch; plot accuracy curves; "
        "runs under torchrun (DDP).",
    ),
}


def feature_commands(module: str) -> dict[str, click.Command]:
    """The click commands ``convscope.commands.MODULE`` defines on its ``app`` (imports it)."""
    command_module = importlib.import_module(f"{__package__}.commands.{module}")
    if not hasattr(command_module, "app"):  # a module of shared pieces (common, data_options)
        return {}
    return dict(typer.main.get_group(command_module.app).commands)


class _Deferred(TyperCommand):
    """A command in ``--help``'s list; its module loads when it is used."""

    rich_help_panel = None

    def __init__(self, name: str, module: str, summary: str):
        super().__init__(name, help=summary, short_help=summary)
        self.module = module

    def real(self) -> click.Command:
        from .cli_checks import harden_command

        return harden_command(self.name, feature_commands(self.module)[self.name])

    def make_context(self, info_name, args, parent=None, **extra):
        return self.real().make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    """The commands of :data:`COMMANDS`, each imported on use."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name in COMMANDS:
            return _Deferred(name, *COMMANDS[name])
        return _unlisted().get(name)  # a command added without a COMMANDS entry still runs


def _unlisted() -> dict[str, click.Command]:
    """Every command, found by importing every module of convscope.commands (slow path)."""
    import pkgutil

    from . import commands

    found: dict[str, click.Command] = {}
    for module in pkgutil.iter_modules(commands.__path__):
        found.update(feature_commands(module.name))
    return found


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="convscope: what a CNN has learned, why it predicts, how it can be fooled.",
)


@app.callback()
def global_options(
    max_pixels: Annotated[
        Optional[int],
        typer.Option(
            "--max-pixels",
            help="largest image (width x height) decoded, checked from the file's header before decoding "
            "[default: $CONVSCOPE_MAX_PIXELS or 40000000]",
        ),
    ] = None,
) -> None:
    if max_pixels is not None:  # the one setting read by every decode path (and by worker processes)
        os.environ["CONVSCOPE_MAX_PIXELS"] = str(max_pixels)


def all_commands() -> dict[str, object]:
    """Every click command of ``convscope`` by its path (``segment train``), command modules imported."""
    found: dict[str, object] = {}

    def add(path, command):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                add(f"{path} {name}", sub)
        else:
            found[path] = command

    for name, (module, _) in COMMANDS.items():
        add(name, feature_commands(module)[name])
    return found


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
        err_console.print(
            f"[red]internal error:[/red] {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
            "(set CONVSCOPE_DEBUG=1 for the traceback)",
            highlight=False,
        )
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
