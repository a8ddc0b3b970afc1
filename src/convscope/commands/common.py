"""Options and helpers shared by every CLI command (the commands themselves hold no logic).

The model options are defined once, here: a command that takes a model declares a
parameter ``model: ModelArgs`` and is decorated with :func:`model_options`, which adds
``-m/--model --weights --arch --labels --input-size --mean --std --preprocess --device
--trust`` to its signature and hands the command one :class:`ModelArgs` (a
:class:`~convscope.models.ModelSpec` plus device and trust). Nothing here imports torch
at import time, so ``convscope --help`` stays fast.
"""

from __future__ import annotations

__all__ = [
    "ArchOption",
    "console",
    "data_preprocess",
    "DEFAULT_MODEL",
    "DeviceOption",
    "err_console",
    "HELP_NAMES",
    "InputSizeOption",
    "LabelsOption",
    "MeanOption",
    "model_args",
    "MODEL_OPTIONS",
    "model_options",
    "ModelArgs",
    "ModelOption",
    "NamesHelp",
    "open_image",
    "open_model",
    "output_path",
    "parse_budget",
    "parse_set",
    "PreprocessOption",
    "SetOption",
    "StdOption",
    "TrustOption",
    "WeightsOption",
]

import functools
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand

if TYPE_CHECKING:
    from ..models import ModelSpec

DEFAULT_MODEL = "efficientnet_lite0"

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="efficientnet_lite0 (embedded), torchvision:NAME, timm:NAME, a file (a convscope checkpoint .safetensors/.json, TorchScript, a state dict with --arch), or module:callable",
    ),
]
WeightsOption = Annotated[
    Optional[Path],
    typer.Option(
        "--weights", help="state-dict file (safetensors or torch) for torchvision/timm/callable architectures"
    ),
]
ArchOption = Annotated[
    Optional[str],
    typer.Option(
        "--arch",
        help="builder of a state-dict file's architecture: package.module:callable, torchvision:NAME, timm:NAME or small_cnn",
    ),
]
LabelsOption = Annotated[
    Optional[Path], typer.Option("--labels", help="class names: one per line, or a JSON list / {id: name}")
]
InputSizeOption = Annotated[
    Optional[str], typer.Option("--input-size", help="the size the network takes, H or HxW (e.g. 32 for a CIFAR net)")
]
MeanOption = Annotated[
    Optional[str],
    typer.Option("--mean", help="normalisation mean the network was trained with: 0.5 | R,G,B | imagenet"),
]
StdOption = Annotated[Optional[str], typer.Option("--std", help="normalisation std: 0.5 | R,G,B | imagenet")]
PreprocessOption = Annotated[
    Optional[str],
    typer.Option("--preprocess", help="center-crop (torchvision's Resize + CenterCrop; default) | squash"),
]
TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="allow unpickling a whole-module checkpoint, or importing a builder a checkpoint names (only from people you trust)",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps")]
SetOption = Annotated[
    list[str], typer.Option("--set", help="method option KEY=VALUE (repeat), e.g. --set steps=20 --set alpha=1/255")
]

#: the model options, in the order ``--help`` lists them.
MODEL_OPTIONS = {
    "model_source": (ModelOption, DEFAULT_MODEL),
    "weights": (WeightsOption, None),
    "arch": (ArchOption, None),
    "labels": (LabelsOption, None),
    "input_size": (InputSizeOption, None),
    "mean": (MeanOption, None),
    "std": (StdOption, None),
    "preprocess": (PreprocessOption, None),
    "device": (DeviceOption, "auto"),
    "trust": (TrustOption, False),
}


@dataclass(frozen=True)
class ModelArgs:
    """The model named on the command line: a ``ModelSpec`` and where/how to load it."""

    spec: ModelSpec
    device: str = "auto"
    trust: bool = False

    @property
    def name(self) -> str:
        return self.spec.source

    def open(self):
        """Load it (one line of error for anything wrong)."""
        from ..devices import resolve_device
        from ..models import load_model

        return load_model(self.spec, device=resolve_device(self.device), trust=self.trust)


def model_args(
    model_source: str = DEFAULT_MODEL,
    weights=None,
    arch=None,
    labels=None,
    input_size=None,
    mean=None,
    std=None,
    preprocess=None,
    device: str = "auto",
    trust: bool = False,
) -> ModelArgs:
    """The :class:`ModelArgs` of the model options' values (used by :func:`model_options`)."""
    from ..models import ModelSpec, parse_floats, parse_labels, parse_size

    spec = ModelSpec(
        model_source,
        None if weights is None else str(weights),
        arch,
        None if labels is None else parse_labels(labels),
        parse_size(input_size),
        parse_floats(mean, "mean"),
        parse_floats(std, "std"),
        preprocess,
    )
    return ModelArgs(spec, device, trust)


def model_options(function=None, *, device: str = "auto", positional: bool = False, model_default: str = DEFAULT_MODEL):
    """Give a command the shared model options; it receives them as ``model: ModelArgs``.

    ``positional``: the model may also be given as the command's first argument
    (``convscope layers torchvision:resnet18``).
    """

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        kept = [p for name, p in signature.parameters.items() if name != "model"]
        added = []
        for name, (annotation, default) in MODEL_OPTIONS.items():
            if name == "device":
                default = device
            if name == "model_source":
                default = model_default
            added.append(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            )
        if positional:
            argument = Annotated[Optional[str], typer.Argument(help="model (same as -m)", show_default=False)]
            kept.insert(
                0,
                inspect.Parameter(
                    "model_argument", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=argument
                ),
            )
        parameters = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "model_argument"
            else p
            for p in kept
        ]
        ordered = (
            [p for p in parameters if p.kind != inspect.Parameter.KEYWORD_ONLY]
            + [p for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY]
            + added
        )

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in MODEL_OPTIONS if name in kwargs}
            given = kwargs.pop("model_argument", None)
            if given is not None:
                values["model_source"] = given
            return command(*args, model=model_args(**values), **kwargs)

        wrapper.__signature__ = signature.replace(parameters=ordered)
        wrapper.__annotations__ = {p.name: p.annotation for p in ordered}
        del wrapper.__wrapped__
        return wrapper

    return decorate(function) if function is not None else decorate


def open_model(
    model="efficientnet_lite0",
    weights: Path | None = None,
    arch: str | None = None,
    trust: bool = False,
    device: str = "auto",
):
    """Load the model named on the command line onto the chosen device (a :class:`ModelArgs` or a spec string)."""
    if isinstance(model, ModelArgs):
        return model.open()
    from ..devices import resolve_device
    from ..models import load_model

    return load_model(model, weights=weights, arch=arch, trust=trust, device=resolve_device(device))


def open_image(spec: str, model, size: int | None = None):
    """Load an image for ``model``: at its input size (or ``size``), with its preprocessing
    (``center-crop`` unless the model says ``squash``), on its device."""
    from ..images import model_image

    return model_image(spec, model, size)


def parse_budget(text: str | float | None, what: str = "--eps") -> float | None:
    """``"8/255"``, ``"0.03"`` or None -> float (pixel units, finite, in [0, 1])."""
    if text is None:
        return None
    from ..cli_checks import parse_eps

    return parse_eps(str(text) if isinstance(text, (int, float)) else text, what)


def parse_set(pairs: list[str], function=None, what: str = "--set") -> dict:
    """``KEY=VALUE`` pairs -> keyword options. Values: JSON when possible (10, 0.5, true), fractions
    like ``1/255``, else the text. With ``function``, keys are checked against its signature
    (did-you-mean)."""
    import difflib
    import json

    from ..errors import ConvscopeError

    options = {}
    known = None
    if function is not None:
        parameters = inspect.signature(function).parameters
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            known = [name for name, p in parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for pair in pairs:
        if "=" not in pair:
            raise ConvscopeError(f"{what} takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if known is not None and key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; options: {', '.join(known)}"
            raise ConvscopeError(f"{what}: unknown option {key!r}{hint}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            try:
                options[key] = parse_budget(value, f"{what} {key}") if "/" in value else value
            except ConvscopeError:
                options[key] = value
    return options


def data_preprocess(model) -> str:
    """The dataset layer's name (``crop`` | ``resize``) for the model's recorded preprocessing."""
    return {"center-crop": "crop", "squash": "resize"}.get(getattr(model, "preprocess", "center-crop"), "crop")


#: ``{NAME}`` in an option's help -> (module, attribute) whose names replace it when the help is shown.
HELP_NAMES = {
    "attacks": ("convscope.attacks", "ATTACKS"),
    "attribution": ("convscope.attribution", "METHODS"),
    "corruptions": ("convscope.robustness.corruptions", "CORRUPTIONS"),
    "defenses": ("convscope.robustness.defenses", "DEFENSES"),
    "adversarial": ("convscope.robustness.training", "ADVERSARIAL_METHODS"),
}


class NamesHelp(TyperCommand):
    """A command whose option help lists a family's names (``help="{attacks}"``, see :data:`HELP_NAMES`).

    The names are read from the registry only when the help is shown, so parsing the command's
    arguments (and rejecting bad ones) imports no torch.
    """

    def format_help(self, ctx, formatter):
        import importlib

        for param in self.params:
            for name, (module, attribute) in HELP_NAMES.items():
                if f"{{{name}}}" in (param.help or ""):
                    family = getattr(importlib.import_module(module), attribute)
                    names = " | ".join(family.names() if hasattr(family, "names") else family)
                    param.help = param.help.replace(f"{{{name}}}", names)
        return super().format_help(ctx, formatter)


def output_path(path: Path | str) -> Path:
    """Make the parent folder of an output file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
