"""``convscope finetune``: frozen features, fine-tuning or training from scratch on a small image folder."""

from __future__ import annotations

__all__ = ["app", "finetune_command"]

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ModelArgs, console, data_preprocess, model_options, output_path
from .data_options import DataLabelsOption, StrictOption, WorkersOption
from ..errors import ConvscopeError

app = typer.Typer()


@app.command("finetune")
@model_options
def finetune_command(
    data: Annotated[
        str,
        typer.Argument(
            help="any labelled dataset: class folders (DATA/CLASS/* or DATA/train|val/CLASS), samples:cifar10, "
            "cifar10-train:ROOT, mnist-train:ROOT, ... (see docs/data.md), or 'generated:photos' (bundled photo crops)"
        ),
    ],
    mode: Annotated[list[str], typer.Option("--mode", help="features | finetune | scratch (repeat to compare)")] = [  # noqa: B006 (typer reads the default)
        "features"
    ],
    epochs: Annotated[int, typer.Option("--epochs", help="passes over the training set")] = 5,
    size: Annotated[int, typer.Option("--size", help="image side in pixels")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (0: mode default)")] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for checkpoints and accuracy curves")] = Path(
        "finetune"
    ),
    val: Annotated[
        Optional[str], typer.Option("--val", help="held-out dataset spec (default: a seeded 30 % per-class split)")
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="at most this many images of each set")] = None,
    workers: WorkersOption = None,
    strict: StrictOption = False,
    data_labels: DataLabelsOption = None,
    model: ModelArgs = None,
) -> None:
    """Train a new head on DATA (features), fine-tune everything, or train from scratch; plot accuracy curves; runs under torchrun (DDP)."""
    import torch
    from rich.table import Table

    from ..transfer import MODES, dataset_split, finetune, photo_dataset, plot_curves

    unknown = [m for m in mode if m not in MODES]
    if unknown:
        raise ConvscopeError(f"unknown mode {unknown[0]!r}: choose {', '.join(MODES)}")
    if epochs < 1:
        raise ConvscopeError("--epochs must be at least 1")
    network = model.open()
    if data == "generated:photos":
        train, held_out = photo_dataset(size=size, seed=seed)
    else:
        train, held_out, skipped = dataset_split(
            data,
            size,
            val,
            seed=seed,
            preprocess=data_preprocess(network),
            limit=limit,
            workers=workers,
            strict=strict,
            label_file=data_labels,
        )
        if skipped:
            console.print(skipped.summary())
    histories = []
    for name in mode:
        _, history = finetune(
            network,
            train,
            held_out,
            mode=name,
            epochs=epochs,
            lr=lr or None,
            batch_size=batch_size,
            seed=seed,
            checkpoint=output_path(out / f"{name}.safetensors"),
        )
        histories.append(history)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return  # under torchrun rank 0 writes the curves and prints
    curves = plot_curves(histories, output_path(out / "accuracy.png"), title=f"{model.name} on {data}")
    table = Table(
        "mode",
        "best val accuracy",
        "last val accuracy",
        "last train accuracy",
        title=f"{model.name} on {data}: {len(train)} train / {len(held_out)} val images, {len(train.classes)} classes",
    )
    for history in histories:
        table.add_row(
            history.mode + (" (interrupted)" if history.interrupted else ""),
            f"{history.best_val_accuracy:.3f}",
            f"{history.val_accuracy[-1]:.3f}" if history.val_accuracy else "-",
            f"{history.train_accuracy[-1]:.3f}" if history.train_accuracy else "-",
        )
    console.print(table)
    console.print(
        f"accuracy curves ({curves.width}x{curves.height}) and self-describing checkpoints in {out} "
        f"(use one with: -m {out / (mode[0] + '.safetensors')})"
    )
