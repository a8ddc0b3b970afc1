"""CLI command ``evaluate-explanations``: a methods x metrics table (CSV + figure) over a dataset."""

from __future__ import annotations

__all__ = ["app", "DEFAULT_METHODS", "DEFAULT_METRICS", "evaluate_command"]

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .common import ModelArgs, console, model_options, output_path
from ..errors import ConvscopeError

if TYPE_CHECKING:
    import torch

app = typer.Typer()

DEFAULT_METHODS = "saliency,guided_backprop,gradcam,integrated_gradients,lrp"
DEFAULT_METRICS = (
    "sparseness,complexity,pixel_flipping,faithfulness_correlation,road_morf,road_lerf,max_sensitivity,random_logit"
)


def _names(text: str, registry) -> list[str]:
    names = [
        registry.canonical(n.strip()) if hasattr(registry, "canonical") else n.strip()
        for n in text.split(",")
        if n.strip()
    ]
    if text.strip() == "all":
        return registry.names()
    for name in names:
        registry.get(name)
    return names


def _read_masks(folder: Path, ids: list[str], size: int) -> torch.Tensor:
    """Masks ``FOLDER/<image stem>.png`` (non-zero = object), resized (nearest) to the images."""
    import numpy as np
    import torch
    from PIL import Image

    masks = []
    for name in ids:
        path = folder / f"{Path(name).stem}.png"
        if not path.is_file():
            raise ConvscopeError(f"no mask {path} for image {name}")
        mask = Image.open(path).convert("L").resize((size, size), Image.Resampling.NEAREST)
        masks.append(torch.from_numpy(np.asarray(mask) > 0))
    return torch.stack(masks)


def _settings_line(metrics: list[str], samples: int, runs: int, seed: int) -> str:
    """The options that changed the numbers, for the CSV and the figure's title."""
    parts = [f"seed {seed}"]
    if {"max_sensitivity", "local_lipschitz"} & set(metrics):
        parts.append(f"{samples} robustness samples")
    if "faithfulness_correlation" in metrics:
        parts.append(f"{runs} correlation runs")
    return ", ".join(parts + ["methods at their quick settings"])


def _dataset_batches(data: str, model, size: int, limit: int | None, batch_size: int, masks: Path | None):
    import torch

    from ..data import SkipLog, open_dataset, stream

    dataset = open_dataset(data, size, "resize" if masks is not None else "crop", labels=model.labels)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    device = next(model.parameters()).device
    skips = SkipLog()
    for batch in stream(dataset, batch_size, device="cpu", skips=skips, indices=range(count)):
        with torch.no_grad():
            predicted = model(batch.images.to(device)).argmax(-1).cpu()
        targets = torch.where(batch.labels >= 0, batch.labels, predicted)
        yield batch.images, targets, (_read_masks(masks, batch.ids, size) if masks is not None else None)
    if len(skips):
        console.print(skips.summary())


@app.command("evaluate-explanations")
@model_options
def evaluate_command(
    data: Annotated[
        str,
        typer.Argument(
            help="dataset spec (folder, samples:imagenet, ...) or scenes:N (generated scenes with exact masks)"
        ),
    ],
    methods: Annotated[
        str, typer.Option("--methods", help="comma-separated attribution methods, or all")
    ] = DEFAULT_METHODS,
    metrics: Annotated[str, typer.Option("--metrics", help="comma-separated metrics, or all")] = DEFAULT_METRICS,
    masks: Annotated[
        Optional[Path], typer.Option("--masks", help="folder of object masks NAME.png (localisation)")
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="at most N images")] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="table to write (.csv); the figure goes next to it (.png)")
    ] = Path("explanations.csv"),
    samples: Annotated[int, typer.Option("--samples", help="perturbations of the robustness metrics")] = 8,
    runs: Annotated[int, typer.Option("--runs", help="random subsets of faithfulness_correlation")] = 64,
    size: Annotated[Optional[int], typer.Option("--size", help="image side (default: the model's)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model: ModelArgs = None,
) -> None:
    """Score attribution methods with explanation metrics over a dataset: mean and 95 % CI per cell."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ..attribution import METHODS
    from ..attribution.evaluation import evaluate_explanations, scene_batches
    from ..attribution.metrics import METRICS

    network = model.open()
    chosen_methods, chosen_metrics = _names(methods, METHODS), _names(metrics, METRICS)
    side = size or network.input_size
    if data.startswith("scenes:"):
        try:
            count = int(data.split(":", 1)[1])
        except ValueError:
            raise ConvscopeError(f"scenes:N needs a number, got {data!r}") from None
        if network.num_classes != 1000:
            raise ConvscopeError("scenes:N targets ImageNet classes (cat 285, espresso 967): use a 1000-class model")
        batches, total = scene_batches(count if limit is None else min(count, limit), side, batch_size, seed), None
    else:
        batches, total = _dataset_batches(data, network, side, limit, batch_size, masks), limit
    metric_options = {
        "max_sensitivity": {"samples": samples},
        "local_lipschitz": {"samples": samples},
        "faithfulness_correlation": {"runs": runs},
    }
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(
            f"{len(chosen_methods)} methods x {len(chosen_metrics)} metrics (Ctrl-C stops)", total=total
        )
        table = evaluate_explanations(
            network,
            batches,
            chosen_methods,
            chosen_metrics,
            seed=seed,
            metric_options=metric_options,
            batch_size=batch_size,
            progress=lambda done: bar.update(task, completed=done),
        )
    if table.images == 0:
        raise ConvscopeError("stopped before the first batch was done: nothing to write")
    table.model = network.name
    table.data = f"{data}{f' (first {limit})' if limit is not None else ''}, {side} px"
    if table.stopped:
        table.data += f", stopped after {table.images} images"
    table.settings = _settings_line(chosen_metrics, samples, runs, seed)
    shown = Table(
        "method",
        *[f"{m} {'↑' if METRICS.meta(m)['higher_better'] else '↓'}" for m in chosen_metrics],
        title=f"{table.images} images{' (stopped early)' if table.stopped else ''}: mean ± 95 % CI",
    )
    for method in chosen_methods:
        cells = []
        for metric in chosen_metrics:
            mean, half, count, undefined = table.summary(method, metric)
            cell = f"{mean:.3f} ± {half:.3f}" if count > 1 else (f"{mean:.3f}" if count else "n/a")
            cells.append(cell + (f" ({undefined} n/a)" if undefined else ""))
        shown.add_row(method, *cells)
    console.print(shown)
    path = table.write_csv(output_path(out))
    picture = path.with_suffix(".png")
    table.figure(picture)
    console.print(f"wrote {path} and {picture}")
