"""Attribution maps over a whole dataset (``convscope explain DATA --out DIR``).

Each batch of the dataset (streamed by :func:`convscope.data.reduce_dataset`, so unreadable files
are skipped and named, runs resume, and the ``ray`` engine can spread the batches) is explained
with one registered method and written as ``maps/BBBBBB.npz`` (``maps`` (N, C, H, W) float32 and
``ids``; ``map_format="npy"``: one ``maps/IIIIIII_<id>.npy`` (C, H, W) float32 per image, ``I``
its dataset index), optional overlays ``overlays/<id>.png``, and ``index/BBBBBB.csv``; at the end
the driver joins the per-batch indexes in dataset order into ``index.csv``: image, label, target,
target probability, score (the target's logit), map file and row (0 for a ``.npy``). Batch ``b`` uses seed ``seed + b``
(stochastic methods), wherever it runs.

``metrics=("deletion", "insertion")`` also scores every map by its deletion / insertion AUC
(Petsiuk et al. 2018, :mod:`convscope.attribution.evaluate`; ``metric_steps`` points per curve),
adds one index column per metric and reduces sums and sums of squares, so the dataset mean comes
with a 95 % confidence interval (Student t over the images) without keeping the maps in memory.
"""

from __future__ import annotations

__all__ = [
    "explain_dataset",
    "ExplainReduction",
    "INDEX_COLUMNS",
    "mean_interval",
    "METRICS",
    "sanity_dataset",
    "SanityReduction",
    "TARGETS",
]

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch

from ..checks import model_device
from ..data import Batch, ModelReduction
from ..errors import ConvscopeError
from ..hooks import frozen
from .registry import METHODS

TARGETS = ("predicted", "label")
MAP_FORMATS = ("npz", "npy")
INDEX_COLUMNS = ("image", "label", "target", "target_name", "probability", "score", "file", "row")
METRICS = ("deletion", "insertion")


def mean_interval(total: float, squares: float, count: int, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its ``level`` confidence interval (Student t) from a sum and a sum of squares."""
    from scipy.stats import t

    if count == 0:
        return float("nan"), float("nan")
    mean = total / count
    if count == 1:
        return mean, float("nan")
    variance = max(0.0, (squares - count * mean * mean) / (count - 1))
    return mean, float(t.ppf(0.5 + level / 2, count - 1)) * (variance / count) ** 0.5


class ExplainReduction(ModelReduction):
    """Writes the maps (one ``.npz`` per batch or one ``.npy`` per image) and one index part per
    batch; the state counts images."""

    def __init__(
        self,
        model,
        method: str,
        out: str | Path,
        target: str = "predicted",
        layer: str | None = None,
        overlays: bool = False,
        seed: int = 0,
        metrics=(),
        metric_steps: int = 16,
        map_format: str = "npz",
        **options,
    ):
        if map_format not in MAP_FORMATS:
            raise ConvscopeError(f"unknown map format {map_format!r}; known: {', '.join(MAP_FORMATS)}")
        self.map_format = map_format
        if target not in TARGETS:
            raise ConvscopeError(f"batch explain --target takes {' | '.join(TARGETS)} (per image), got {target!r}")
        from . import method_options

        self.model, self.method, self.out = model, METHODS.canonical(method), Path(out)
        self.target, self.layer, self.overlays, self.seed = target, layer, overlays, seed
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ConvscopeError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
        self.metrics, self.metric_steps = tuple(metrics), metric_steps
        accepted = method_options(self.method)
        self.options = {k: v for k, v in options.items() if k in accepted}
        if layer is not None and "layer" not in accepted:
            raise ConvscopeError(f"{self.method} takes no --layer")

    def key(self) -> dict:
        return {
            "method": self.method,
            "target": self.target,
            "layer": self.layer,
            "seed": self.seed,
            "options": self.options,
            "metrics": list(self.metrics),
            "metric_steps": self.metric_steps,
            **({"map_format": self.map_format} if self.map_format != "npz" else {}),
            **self.model_key(),
        }

    def prepare(self, device) -> None:
        super().prepare(device)
        for folder in ("maps", "index") + (("overlays",) if self.overlays else ()):
            (self.out / folder).mkdir(parents=True, exist_ok=True)

    def start(self) -> dict:
        state = {"images": 0, "probability": 0.0}
        for metric in self.metrics:
            state[f"{metric}_sum"] = state[f"{metric}_squares"] = 0.0
        return state

    def update(self, state: dict, batch: Batch, number: int) -> None:
        from . import attribute, display_mode, display_unit, method_options

        device = model_device(self.model)
        x = batch.images.to(device)
        with torch.no_grad(), frozen(self.model):
            logits = self.model(x)
        predicted = logits.argmax(-1)
        targets = predicted
        if self.target == "label":
            given = batch.labels.to(device)
            targets = torch.where(given >= 0, given, predicted)
        options = dict(self.options)
        if "seed" in method_options(self.method):
            options["seed"] = self.seed + number
        if self.layer is not None:
            options["layer"] = self.layer
        maps = attribute(self.model, x, targets, method=self.method, **options).detach().float().cpu()
        probabilities = logits.softmax(-1).gather(1, targets[:, None])[:, 0].cpu()
        scores = logits.gather(1, targets[:, None])[:, 0].cpu()
        aucs = {}
        for metric in self.metrics:
            from .evaluate import causal_curve

            aucs[metric] = causal_curve(self.model, x, maps.to(device), targets, metric, self.metric_steps).auc.cpu()
            state[f"{metric}_sum"] += float(aucs[metric].double().sum())
            state[f"{metric}_squares"] += float((aucs[metric].double() ** 2).sum())
        name = f"{number:06d}"
        if self.map_format == "npz":
            files = [f"maps/{name}.npz"] * len(batch.ids)
            _atomic_npz(self.out / "maps" / f"{name}.npz", maps=maps.numpy(), ids=np.array(batch.ids))
        else:
            files = [f"maps/{int(i):07d}_{_safe_name(d)}.npy" for i, d in zip(batch.indices.tolist(), batch.ids)]
            for file, one in zip(files, maps.numpy()):
                _atomic_npy(self.out / file, one)
        labels = getattr(self.model, "labels", None)
        text = io.StringIO()
        writer = csv.writer(text)
        for row, (image_id, label, target) in enumerate(zip(batch.ids, batch.labels.tolist(), targets.tolist())):
            writer.writerow(
                [
                    image_id,
                    "" if label < 0 else label,
                    target,
                    labels[target] if labels else "",
                    f"{float(probabilities[row]):.6f}",
                    f"{float(scores[row]):.6f}",
                    files[row],
                    row if self.map_format == "npz" else 0,
                    *[f"{float(aucs[m][row]):.6f}" for m in self.metrics],
                ]
            )
            if self.overlays:
                from ..render import overlay_with_bar, save_picture

                path = self.out / "overlays" / (_safe_name(image_id) + ".png")
                title = f"{image_id}: {self.method} for {labels[target] if labels else f'class {target}'}"
                title += f" (p = {float(probabilities[row]):.3g})"
                picture = overlay_with_bar(
                    batch.images[row].cpu(),
                    maps[row],
                    mode=display_mode(self.method),
                    unit=display_unit(self.method, self.options),
                    title=title,
                )
                save_picture(picture, path, title=title)
        part = self.out / "index" / f"{name}.csv"
        part.with_suffix(".tmp").write_text(text.getvalue())
        os.replace(part.with_suffix(".tmp"), part)
        state["images"] += len(batch.ids)
        state["probability"] += float(probabilities.sum())

    def summary(self, state: dict) -> dict[str, tuple[float, float]]:
        """Metric -> (mean AUC, 95 % CI half-width) over the images."""
        return {m: mean_interval(state[f"{m}_sum"], state[f"{m}_squares"], state["images"]) for m in self.metrics}

    def finish(self, total_batches: int) -> Path:
        """Join the per-batch index parts into ``index.csv`` (dataset order)."""
        index = self.out / "index.csv"
        with index.open("w", newline="") as handle:
            handle.write(",".join(INDEX_COLUMNS + tuple(f"{m}_auc" for m in self.metrics)) + "\n")
            for part in sorted((self.out / "index").glob("*.csv")):
                if int(part.stem) < total_batches:
                    handle.write(part.read_text())
        return index


def _safe_name(image_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)[-180:]


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def _atomic_npz(path: Path, **arrays) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)


def explain_dataset(
    model,
    data,
    method: str = "gradcam",
    out: str | Path = "explanations",
    target: str = "predicted",
    layer: str | None = None,
    overlays: bool = False,
    seed: int = 0,
    batch_size: int = 16,
    size: int | None = None,
    preprocess: str = "crop",
    strict: bool = False,
    resume: bool = True,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    label_file=None,
    progress: bool = False,
    metrics=(),
    metric_steps: int = 16,
    map_format: str = "npz",
    **options,
):
    """Explain every image of ``data`` with ``method`` and write maps + ``index.csv`` under ``out``
    (``map_format``: ``npz``, one file per batch, or ``npy``, one file per image).

    ``resume`` keeps per-shard records in ``out/.shards`` so the same call continues an
    interrupted run. Returns ``(index path, Reduced)``; with ``metrics``, ``Reduced.summary`` maps
    each metric to (mean AUC, 95 % CI half-width).

    >>> index, _ = explain_dataset(model, "samples:imagenet", "gradcam", "maps/")
    """
    from ..data import run_reduction

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConvscopeError(f"--out {out} is a file; batch explain writes a folder")
    reduction = ExplainReduction(
        model, method, out, target, layer, overlays, seed, metrics, metric_steps, map_format, **options
    )
    reduced = run_reduction(
        reduction,
        model,
        data,
        f"explain {reduction.method}",
        size=size,
        preprocess=preprocess,
        label_file=label_file,
        batch_size=batch_size,
        workers=workers,
        strict=strict,
        resume=out / ".shards" if resume else None,
        engine=engine,
        address=address,
        progress=progress,
    )
    reduced.summary = reduction.summary(reduced.state)
    return reduction.finish(-(-reduced.total // batch_size)), reduced


class SanityReduction(ModelReduction):
    """The model-parameter randomization test (Adebayo et al. 2018) reduced over a dataset:
    sums and sums of squares of the per-image Spearman and SSIM, per (method, step).

    The randomization seed is the same for every batch (all images see the same randomized
    models); the targets are each image's prediction (or label with ``target="label"``).
    """

    def __init__(
        self,
        model,
        methods,
        scheme: str = "cascading",
        seed: int = 0,
        target: str = "predicted",
        options: dict | None = None,
        groups=None,
    ):
        from .sanity import randomization_groups

        if target not in TARGETS:
            raise ConvscopeError(f"dataset sanity --target takes {' | '.join(TARGETS)}, got {target!r}")
        self.model, self.methods, self.scheme, self.seed = model, [METHODS.canonical(m) for m in methods], scheme, seed
        self.target, self.options = target, options or {}
        self.groups = list(groups) if groups is not None else list(randomization_groups(model))

    def key(self) -> dict:
        return {
            "methods": self.methods,
            "scheme": self.scheme,
            "seed": self.seed,
            "target": self.target,
            "options": self.options,
            "groups": self.groups,
            **self.model_key(),
        }

    def start(self) -> dict:
        return {"images": 0}

    def update(self, state: dict, batch: Batch, number: int) -> None:
        from .sanity import sanity_check

        device = model_device(self.model)
        x = batch.images.to(device)
        target = None
        if self.target == "label":
            with torch.no_grad(), frozen(self.model):
                predicted = self.model(x).argmax(-1)
            given = batch.labels.to(device)
            target = torch.where(given >= 0, given, predicted)
        result = sanity_check(
            self.model,
            x,
            target,
            self.methods,
            self.scheme,
            self.groups,
            seed=self.seed,
            options=self.options,
            progress=False,
        )
        self.step_names = list(result.steps)
        for name, values in (("spearman", result.spearman), ("ssim", result.ssim)):
            values = torch.from_numpy(np.nan_to_num(values.astype(np.float64)))
            state[f"{name}_sum"] = state.get(f"{name}_sum", 0) + values.sum(-1)
            state[f"{name}_squares"] = state.get(f"{name}_squares", 0) + (values**2).sum(-1)
        state["images"] += x.shape[0]

    def merge(self, total: dict, part: dict) -> dict:
        for name, value in part.items():
            total[name] = total.get(name, 0) + value
        return total

    def rows(self, state: dict) -> list[tuple[str, int, float, float, float, float]]:
        """(method, step number, mean Spearman, CI half-width, mean SSIM, CI half-width)."""
        count, rows = state["images"], []
        for i, method in enumerate(self.methods):
            for j in range(state["spearman_sum"].shape[1]):
                rho = mean_interval(float(state["spearman_sum"][i, j]), float(state["spearman_squares"][i, j]), count)
                ssim = mean_interval(float(state["ssim_sum"][i, j]), float(state["ssim_squares"][i, j]), count)
                rows.append((method, j, *rho, *ssim))
        return rows


def sanity_dataset(
    model,
    data,
    methods=("saliency", "gradcam"),
    scheme: str = "cascading",
    seed: int = 0,
    target: str = "predicted",
    options: dict | None = None,
    batch_size: int = 8,
    size: int | None = None,
    preprocess: str = "crop",
    strict: bool = False,
    workers: int | None = None,
    engine: str = "local",
    address: str | None = None,
    label_file=None,
    progress: bool = False,
    groups=None,
):
    """:func:`~convscope.attribution.sanity.sanity_check` over a dataset, streamed: mean Spearman / SSIM
    per method and randomization step with 95 % confidence intervals over the images.

    Returns ``(rows, step names, Reduced)`` with rows as in :meth:`SanityReduction.rows`.
    """
    from ..data import run_reduction

    reduction = SanityReduction(model, methods, scheme, seed, target, options, groups)
    reduced = run_reduction(
        reduction,
        model,
        data,
        "sanity",
        size=size,
        preprocess=preprocess,
        label_file=label_file,
        batch_size=batch_size,
        workers=workers,
        strict=strict,
        engine=engine,
        address=address,
        progress=progress,
    )
    names = list(getattr(reduction, "step_names", None) or reduction.groups)
    return reduction.rows(reduced.state), names, reduced
