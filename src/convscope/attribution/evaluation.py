"""A methods x metrics table over a dataset, with 95 % confidence intervals over images.

:func:`evaluate_explanations` streams batches, computes each method's maps once per batch, scores
them with each metric of :data:`~convscope.attribution.metrics.METRICS` and keeps the per-image
scores, so the table can be cut short (Ctrl-C) and still be written for the images done. The
interval is Student's t over the images with a finite score (NaN = undefined, e.g. all-zero maps,
counted separately): ``mean +- t_{0.975, n-1} * sd / sqrt(n)``.
"""

from __future__ import annotations

__all__ = ["evaluate_explanations", "ExplanationTable", "scene_batches", "SCENE_TARGETS"]

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import ConvscopeError
from .metrics import METRICS

SCENE_TARGETS = {"cat": 285, "coffee": 967}
"""ImageNet class of the generated scenes' materials (Egyptian cat, espresso); the astronaut has none."""


@dataclass
class ExplanationTable:
    """Per-image scores: ``scores[method][metric]`` is a list of floats (NaN = undefined).

    ``model``, ``data`` and ``settings`` say what was scored (written into every CSV row and the
    figure's title), e.g. ``"efficientnet_lite0"``, ``"samples:imagenet, 224 px"``, ``"runs=64"``.
    """

    methods: list[str]
    metrics: list[str]
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    images: int = 0
    stopped: bool = False
    model: str = ""
    data: str = ""
    settings: str = ""
    #: (method, metric) -> (mean, half-width, count, undefined) read from CSVs (:meth:`read_csv`)
    summaries: dict[tuple[str, str], tuple[float, float, int, int]] = field(default_factory=dict)

    @classmethod
    def read_csv(cls, *paths: str | Path) -> ExplanationTable:
        """One table from the CSVs of several runs (:meth:`write_csv`): their cells, methods and metrics in
        the order first seen, a cell no run scored shown as no score. The runs must share model and data
        (the rows of runs on the same images with the same seed make one table; a run cut short, by
        ``--limit`` or Ctrl-C, scored its first images, and its cells say how many); ``settings`` joins theirs."""
        rows = []
        for path in paths:
            with Path(path).open(newline="") as handle:
                rows += list(csv.DictReader(handle))
        if not rows:
            raise ConvscopeError("no rows in " + ", ".join(map(str, paths)))
        if len({(row["model"], _dataset(row["data"])) for row in rows}) > 1:
            raise ConvscopeError("these tables score different models or data: they cannot make one table")
        methods = list(dict.fromkeys(row["method"] for row in rows))
        metrics = list(dict.fromkeys(row["metric"] for row in rows))
        table = cls(methods, metrics, {m: {k: [] for k in metrics} for m in methods})
        for row in rows:
            mean, low = float(row["mean"]), float(row["ci95_low"])
            table.summaries[(row["method"], row["metric"])] = (
                mean,
                mean - low,
                int(row["images"]),
                int(row["undefined"]),
            )
        table.images = max(int(row["images"]) + int(row["undefined"]) for row in rows)
        table.model, table.data = rows[0]["model"], _dataset(rows[0]["data"])
        table.settings = ", ".join(dict.fromkeys(part for row in rows for part in row["settings"].split(", ") if part))
        return table

    def summary(self, method: str, metric: str) -> tuple[float, float, int, int]:
        """(mean, 95 % half-width, images with a score, images with NaN)."""
        if self.summaries or not self.scores[method][metric]:
            return self.summaries.get((method, metric), (float("nan"), float("nan"), 0, 0))
        values = np.asarray(self.scores[method][metric], dtype=float)
        finite = values[np.isfinite(values)]
        count = len(finite)
        if count == 0:
            return float("nan"), float("nan"), 0, len(values)
        if count == 1:
            return float(finite[0]), float("nan"), 1, len(values) - 1
        from scipy.stats import t

        half = t.ppf(0.975, count - 1) * finite.std(ddof=1) / math.sqrt(count)
        return float(finite.mean()), float(half), count, len(values) - count

    def rows(self) -> list[dict]:
        rows = []
        for method in self.methods:
            for metric in self.metrics:
                mean, half, count, undefined = self.summary(method, metric)
                rows.append(
                    {
                        "method": method,
                        "metric": metric,
                        "family": METRICS.meta(metric)["family"],
                        "higher_better": METRICS.meta(metric)["higher_better"],
                        "mean": mean,
                        "ci95_low": mean - half,
                        "ci95_high": mean + half,
                        "images": count,
                        "undefined": undefined,
                        "model": self.model,
                        "data": self.data,
                        "settings": self.settings,
                    }
                )
        return rows

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        rows = self.rows()
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path

    def figure(self, path: str | Path | None = None):
        """One panel per metric: the mean of each method with its 95 % interval (arrow: better)."""
        from ..render import pyplot, save_figure, wrap

        plt = pyplot()

        columns = min(4, len(self.metrics))
        rows = math.ceil(len(self.metrics) / columns)
        fig, axes = plt.subplots(
            rows, columns, figsize=(3.3 * columns, 0.35 * len(self.methods) * rows + 1.2 * rows), squeeze=False
        )
        for axis in axes.flat[len(self.metrics) :]:
            axis.axis("off")
        for axis, metric in zip(axes.flat, self.metrics):
            stats = [self.summary(m, metric) for m in self.methods]
            means = [s[0] for s in stats]
            errors = [0 if not np.isfinite(s[1]) else s[1] for s in stats]
            positions = np.arange(len(self.methods))
            axis.barh(positions, means, xerr=errors, color="tab:blue", alpha=0.7, capsize=2)
            axis.set_yticks(positions, self.methods if axis in axes[:, 0] else [""] * len(self.methods), fontsize=7)
            axis.invert_yaxis()
            better = "higher" if METRICS.meta(metric)["higher_better"] else "lower"
            axis.set_title(f"{metric} ({better} better)", fontsize=8)
            axis.set_xlabel(METRICS.meta(metric)["unit"], fontsize=7)
            axis.tick_params(axis="x", labelsize=7)
            axis.xaxis.set_major_locator(plt.MaxNLocator(5))
            for position, (_, _, count, undefined) in zip(positions, stats):  # at the right edge
                fewer = count + undefined < self.images  # a run cut short (read_csv of several runs)
                if undefined or fewer or not count:
                    label = "no score" if not count else f"{undefined} n/a" if undefined else f"{count} images"
                    axis.text(
                        0.99, position, label, va="center", ha="right", fontsize=6, transform=axis.get_yaxis_transform()
                    )
        subject = " on ".join(part for part in (self.model, self.data) if part)
        stopped = ", stopped early" if self.stopped else ""
        lines = [
            f"{subject + ': ' if subject else ''}explanation metrics over {self.images} images{stopped}",
            "bars: mean over images, whiskers: 95 % Student-t interval"
            + (f"; {self.settings}" if self.settings else ""),
        ]
        fig.suptitle(wrap("\n".join(lines), fig.get_figwidth() * 0.95, 9), fontsize=9)
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
        return fig


def _dataset(data: str) -> str:
    """A table's data without how far its run got (``(first 10)``, ``stopped after 12 images``)."""
    return re.sub(r" \(first \d+\)|, stopped after \d+ images", "", data)


def _settings(method: str, options: dict | None) -> dict:
    from . import METHODS, method_options

    settings = {k: v for k, v in METHODS.meta(method)["quick"].items() if k in method_options(method)}
    settings.update((options or {}).get(method, {}))
    return settings


def evaluate_explanations(
    model,
    batches: Iterable,
    methods: Sequence[str],
    metrics: Sequence[str],
    options: dict | None = None,
    metric_options: dict | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress=None,
) -> ExplanationTable:
    """Score ``methods`` with ``metrics`` over ``batches`` of ``(images, targets, masks | None)``.

    Args:
        batches: iterable of (x (N, 3, H, W) in [0, 1], class ids Tensor[N], masks (N, H, W) bool or None).
        options: per-method options (default: the registry's quick settings).
        metric_options: per-metric options, e.g. ``{"max_sensitivity": {"samples": 4}}``.
        progress: called with the number of images done after each batch.

    A KeyboardInterrupt ends the run early; the table holds the images finished (``stopped``).
    """
    from . import METHODS, attribute
    from ..checks import model_device

    for name in methods:
        METHODS.get(name)
    for name in metrics:
        METRICS.get(name)
    table = ExplanationTable(list(methods), list(metrics), {m: {k: [] for k in metrics} for m in methods})
    device = model_device(model)
    try:
        for images, targets, masks in batches:
            images, targets = images.to(device), torch.as_tensor(targets).to(device)
            if masks is None and any("masks" in METRICS.meta(k)["needs"] for k in metrics):
                raise ConvscopeError("localisation metrics need masks: use scenes:N data or --masks FOLDER")
            results = {}
            for method in methods:
                settings = _settings(method, options)

                def explain(x, ids, method=method, settings=settings):
                    return torch.cat(
                        [
                            attribute(model, x[i : i + batch_size], ids[i : i + batch_size], method=method, **settings)
                            for i in range(0, len(x), batch_size)
                        ]
                    )

                heat = explain(images, targets)
                for metric in metrics:
                    extra = dict((metric_options or {}).get(metric, {}))
                    if METRICS.meta(metric)["stochastic"]:
                        extra.setdefault("seed", seed)
                    if metric == "mprt":
                        extra.update(method=method, options=settings)
                    scores = METRICS.get(metric)(model, images, heat, targets, explain=explain, masks=masks, **extra)
                    results[(method, metric)] = scores.tolist()
            for (method, metric), values in results.items():  # a batch counts only once it is complete
                table.scores[method][metric] += values
            table.images += len(images)
            if progress is not None:
                progress(table.images)
    except KeyboardInterrupt:
        table.stopped = True
    return table


def scene_batches(count: int, size: int, batch_size: int, seed: int = 0):
    """Generated scenes (:func:`~convscope.segmentation.data.generate_scenes`) with an ImageNet target:
    the cat or coffee material covering most pixels, its exact mask; scenes with neither are left out."""
    from ..segmentation.data import SCENE_CLASSES, generate_scenes

    scenes = generate_scenes(count, size=size, seed=seed)
    chosen, targets, masks = [], [], []
    for index in range(len(scenes)):
        areas = {name: int((scenes.masks[index] == SCENE_CLASSES.index(name)).sum()) for name in SCENE_TARGETS}
        name = max(areas, key=areas.get)
        if areas[name] == 0:
            continue
        chosen.append(index)
        targets.append(SCENE_TARGETS[name])
        masks.append(scenes.masks[index] == SCENE_CLASSES.index(name))
    if not chosen:
        raise ConvscopeError("no generated scene shows a cat or a coffee cup; use more scenes")
    images = scenes.images[chosen]
    targets, masks = torch.tensor(targets), torch.stack(masks)
    for start in range(0, len(chosen), batch_size):
        yield images[start : start + batch_size], targets[start : start + batch_size], masks[start : start + batch_size]
