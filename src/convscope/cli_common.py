"""Options and helpers shared by every CLI command (the commands themselves hold no logic)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .devices import resolve_device
from .images import load_image
from .models import DEFAULT_MODEL, ImageClassifier, load_model

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)

ModelOption = Annotated[str, typer.Option("--model", "-m", help="efficientnet_lite0 (embedded), torchvision:NAME, timm:NAME, a file, or module:callable")]
WeightsOption = Annotated[Optional[Path], typer.Option("--weights", help="state-dict file for torchvision/timm/callable architectures")]
ArchOption = Annotated[Optional[str], typer.Option("--arch", help="package.module:callable that builds the architecture of a state-dict file")]
TrustOption = Annotated[bool, typer.Option("--trust", help="allow unpickling a whole-module checkpoint (only from people you trust)")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps")]
SizeOption = Annotated[int, typer.Option("--size", help="resize images to SIZE x SIZE")]


def open_model(model: str = DEFAULT_MODEL, weights: Path | None = None, arch: str | None = None,
               trust: bool = False, device: str = "auto") -> ImageClassifier:
    """Load the model named on the command line onto the chosen device."""
    return load_model(model, weights=weights, arch=arch, trust=trust, device=resolve_device(device))


def open_image(spec: str, model: ImageClassifier, size: int | None = None):
    """Load an image for ``model`` (at its native size unless ``size`` is given), on its device."""
    from .checks import model_device

    return load_image(spec, size or model.input_size).to(model_device(model))


def output_path(path: Path | str) -> Path:
    """Make the parent folder of an output file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
