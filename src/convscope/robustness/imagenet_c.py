"""Corruption errors, CE, mCE and relative mCE of a classifier (Hendrycks & Dietterich 2019).

For each corruption c and severity s the top-1 error E(f, s, c) on corrupted copies of the
images; CE_c = sum_s E(f, s, c) / sum_s E(base, s, c), mCE = mean of CE_c over the 15
benchmark corruptions, relative CE_c = sum_s (E(f, s, c) - E(f, clean)) /
sum_s (E(base, s, c) - E(base, clean)). The baseline is AlexNet with the errors published in
the paper (per corruption, averaged over severities) or any model evaluated on the same images.

Two sources of corrupted images: the released files read as they are (ImageNet-C /
Tiny-ImageNet-C ``CORRUPTION/SEVERITY/WNID/*.JPEG``, CIFAR-10-C ``.npy``; numbers comparable with
published ones), or corruptions drawn on the fly (seeded, so two models see the same corrupted
images) on any labelled images, where the AlexNet normalisation is only meaningful on ImageNet
validation images (deviation from the paper's fixed files).

Severities: the errors are kept per severity actually run (``severities``); CE sums over them
and the baseline's errors must be at the same severities. AlexNet's published errors are
averages over all five severities, so CE against them is refused on a subset (give a baseline
model, which is then evaluated at the same severities).

Everything streams through :func:`convscope.data.reduce_dataset`: wrong/seen counts per
(corruption, severity) are the state, so memory does not grow with the number of images and
runs resume from per-shard files.
"""

from __future__ import annotations

__all__ = ["ALEXNET_CLEAN_ERROR", "ALEXNET_ERRORS", "corruption_errors", "CorruptionErrors", "CorruptionReduction"]

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..checks import check_images, model_device
from ..data import Batch, ModelReduction
from ..errors import ConvscopeError
from ..hooks import frozen
from .corruptions import BENCHMARK_CORRUPTIONS, SEVERITIES, corrupt
from ..progress import progress_bar

ALEXNET_ERRORS = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
"""AlexNet's ImageNet-C top-1 errors averaged over the 5 severities (Hendrycks & Dietterich 2019)."""
ALEXNET_CLEAN_ERROR = 0.4348


@dataclass
class CorruptionErrors:
    """Top-1 errors of one model: ``clean`` (NaN when no clean images were run) and
    ``errors[corruption][i]`` at ``severities[i]``."""

    model_name: str
    clean: float
    errors: dict[str, list[float]] = field(default_factory=dict)
    count: int = 0
    severities: tuple[int, ...] = SEVERITIES
    skipped: list = field(default_factory=list)

    @property
    def all_severities(self) -> bool:
        return tuple(self.severities) == tuple(SEVERITIES)

    def mean_error(self, name: str) -> float:
        return sum(self.errors[name]) / len(self.errors[name])

    def corruption_error(self, name: str, baseline: CorruptionErrors | None = None, relative: bool = False) -> float:
        """CE (or relative CE) of one corruption against ``baseline`` (AlexNet's published errors when None)."""
        ours = self.errors[name]
        if baseline is None:
            if name not in ALEXNET_ERRORS:
                raise ConvscopeError(f"AlexNet's published errors cover the 15 benchmark corruptions, not {name!r}")
            if not self.all_severities:
                raise ConvscopeError(
                    f"CE against AlexNet's published errors needs all 5 severities (they are averages over 1-5), "
                    f"got {', '.join(map(str, self.severities))}: run all five or give a baseline model"
                )
            base, base_clean = [ALEXNET_ERRORS[name]] * len(ours), ALEXNET_CLEAN_ERROR
        else:
            if tuple(baseline.severities) != tuple(self.severities):
                raise ConvscopeError(
                    f"the baseline was run at severities {baseline.severities}, this model at "
                    f"{self.severities}: CE needs the same severities"
                )
            base, base_clean = baseline.errors[name], baseline.clean
        if relative:
            denominator = sum(e - base_clean for e in base)
            return sum(e - self.clean for e in ours) / denominator if denominator else float("nan")
        denominator = sum(base)
        return sum(ours) / denominator if denominator else float("nan")

    def scored(self, name: str, baseline: CorruptionErrors | None = None) -> bool:
        """Whether CE can be computed for ``name`` (see :meth:`corruption_error`)."""
        if baseline is not None:
            return name in baseline.errors
        return name in BENCHMARK_CORRUPTIONS and self.all_severities

    def mce(self, baseline: CorruptionErrors | None = None, relative: bool = False) -> float:
        """Mean CE over the benchmark corruptions that were evaluated."""
        names = [name for name in self.errors if name in BENCHMARK_CORRUPTIONS]
        if not names:
            raise ConvscopeError("mCE needs at least one of the 15 benchmark corruptions")
        return sum(self.corruption_error(name, baseline, relative) for name in names) / len(names)

    def to_csv(self, path: str | Path, baseline: CorruptionErrors | None = None) -> Path:
        """One row per corruption: errors per severity run (``error_sN`` = severity N), mean error, CE, relative CE."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["corruption", *[f"error_s{s}" for s in self.severities], "mean_error", "ce", "relative_ce"]
            )
            writer.writerow(["clean", *[f"{self.clean:.4f}"] * len(self.severities), f"{self.clean:.4f}", "", ""])
            for name, errors in self.errors.items():
                scored = self.scored(name, baseline)
                ce = f"{self.corruption_error(name, baseline):.4f}" if scored else ""
                relative = f"{self.corruption_error(name, baseline, relative=True):.4f}" if scored else ""
                writer.writerow([name, *[f"{e:.4f}" for e in errors], f"{self.mean_error(name):.4f}", ce, relative])
        return path

    def plot(self, path: str | Path, baseline: CorruptionErrors | None = None) -> Path:
        """Error vs severity (the severities run; 0 = clean), one panel per corruption titled with
        its mean error over the severities (and its CE when it can be scored); the baseline dashed,
        the line styles named in the title."""
        import math

        from ..render import pyplot, save_figure, wrap

        plt = pyplot()

        names = list(self.errors)
        columns = min(5, len(names))
        rows = (len(names) + columns - 1) // columns
        figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.4 * rows), squeeze=False, sharey=True)
        clean = not math.isnan(self.clean)
        for axis, name in zip(axes.flat, names):
            xs = ([0] if clean else []) + list(self.severities)
            axis.plot(xs, ([self.clean] if clean else []) + self.errors[name], "o-", clip_on=False)
            if baseline is not None and name in baseline.errors:
                axis.plot(xs, ([baseline.clean] if clean else []) + baseline.errors[name], "s--", clip_on=False)
            numbers = f"mean {self.mean_error(name):.2f}"
            if self.scored(name, baseline):
                numbers += f", CE {self.corruption_error(name, baseline):.2f}"
            axis.set_title(f"{name.replace('_', ' ')}\n({numbers})", fontsize=9)
            axis.set_ylim(0, 1)
            axis.set_xticks(xs)
            axis.set_xlabel("severity", fontsize=8)
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[len(names) :]:
            axis.axis("off")
        for axis in axes[:, 0]:
            axis.set_ylabel("top-1 error (fraction)", fontsize=8)
        scored = [n for n in names if n in BENCHMARK_CORRUPTIONS and self.scored(n, baseline)]
        against = f" (solid) vs {baseline.model_name} (dashed)" if baseline is not None else ""
        title = (
            f"{self.model_name}{against}: top-1 error vs severity{' (0 = clean)' if clean else ''}"
            + (f" on {self.count} images" if self.count else "")
            + (
                f", mCE {self.mce(baseline) * 100:.1f}%"
                if scored and len(scored) == len([n for n in names if n in BENCHMARK_CORRUPTIONS])
                else ""
            )
        )
        figure.suptitle(wrap(title, 2.6 * columns, 11), fontsize=11)
        figure.tight_layout()
        save_figure(figure, path)
        plt.close(figure)
        return Path(path)


class CorruptionReduction(ModelReduction):
    """Wrong/seen counts per (corruption, severity) (+ clean), from released files or on the fly.

    On the fly, batch ``b`` of corruption number ``c`` at severity ``s`` uses the seed
    ``seed + 1000 c + 100 s + b``. For a released layout (items with ``groups``), each item
    counts towards its own (corruption, severity).
    """

    def __init__(
        self,
        model,
        corruptions: Sequence[str],
        severities: Sequence[int],
        seed: int = 0,
        groups: Sequence[tuple[str, int]] | None = None,
    ):
        self.model, self.corruptions, self.severities = model, list(corruptions), list(severities)
        self.seed, self.groups = seed, groups

    def key(self) -> dict:
        return {
            "corruptions": self.corruptions,
            "severities": self.severities,
            "seed": self.seed,
            "released": self.groups is not None,
            **self.model_key(),
        }

    def start(self) -> dict:
        shape = (len(self.corruptions), len(self.severities))
        return {
            "wrong": torch.zeros(shape, dtype=torch.long),
            "seen": torch.zeros(shape, dtype=torch.long),
            "clean_wrong": torch.zeros((), dtype=torch.long),
            "clean_seen": torch.zeros((), dtype=torch.long),
        }

    @torch.no_grad()
    def update(self, state: dict, batch: Batch, number: int) -> None:
        device = model_device(self.model)
        x = check_images(batch.images).to(device)
        given = batch.labels.to(device)
        with frozen(self.model):
            if self.groups is not None:
                wrong = (self.model(x).argmax(-1) != given).cpu()
                for row, index in enumerate(batch.indices.tolist()):
                    name, severity = self.groups[index]
                    if name in self.corruptions and severity in self.severities:
                        c, s = self.corruptions.index(name), self.severities.index(severity)
                        state["wrong"][c, s] += int(wrong[row])
                        state["seen"][c, s] += 1
                return
            predicted = self.model(x).argmax(-1)
            labels = torch.where(given >= 0, given, predicted)
            state["clean_wrong"] += int((predicted != labels).sum())
            state["clean_seen"] += len(labels)
            for c, name in enumerate(self.corruptions):
                for s, severity in enumerate(self.severities):
                    images = corrupt(x, name, severity, seed=self.seed + 1000 * c + 100 * severity + number)
                    state["wrong"][c, s] += int((self.model(images).argmax(-1) != labels).sum())
                    state["seen"][c, s] += len(labels)

    def result(self, state: dict, skipped=(), clean: float | None = None) -> CorruptionErrors:
        seen = state["seen"].clamp_min(1).double()
        errors = (state["wrong"].double() / seen).tolist()
        if self.groups is not None and (state["seen"] == 0).any():
            missing = [
                f"{self.corruptions[c]}/{self.severities[s]}" for c, s in (state["seen"] == 0).nonzero().tolist()
            ]
            raise ConvscopeError(f"no images for {', '.join(missing[:5])} in the corruption files")
        if clean is None:
            clean = (
                float(state["clean_wrong"]) / float(state["clean_seen"]) if int(state["clean_seen"]) else float("nan")
            )
        count = int(state["clean_seen"]) if self.groups is None else int(state["seen"].sum())
        return CorruptionErrors(
            getattr(self.model, "name", type(self.model).__name__),
            clean,
            {name: errors[c] for c, name in enumerate(self.corruptions)},
            count,
            tuple(self.severities),
            list(skipped),
        )


def corruption_errors(
    model: torch.nn.Module,
    data,
    corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    progress: bool = True,
    total: int | None = None,
    batch_size: int = 16,
    size: int | None = None,
    preprocess: str = "crop",
    strict: bool = False,
    resume: str | Path | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    label_file: str | Path | None = None,
    shard_batches: int = 8,
    clean: float | None = None,
) -> CorruptionErrors:
    """Top-1 error of ``model`` on corrupted copies of labelled images, streamed.

    Args:
        model: classifier taking RGB in [0, 1].
        data: a dataset spec or ``Dataset`` (:func:`convscope.data.open_dataset`): a released
            corruption layout (ImageNet-C tree, CIFAR-10-C) is read as it is; any other labelled
            data is corrupted on the fly. Or an iterable of ``(images, labels)`` batches.
        corruptions, severities: what to evaluate (default: the 15 benchmark corruptions x 5).
        seed: corruption seed (see :class:`CorruptionReduction`).
        resume, engine, strict: see :func:`convscope.data.reduce_dataset`.
        clean: the model's clean error, for the relative CE of a released layout (which holds
            no clean images).

    >>> result = corruption_errors(model, "samples:imagenet", ["fog", "contrast"])
    >>> result.mce()
    """
    from ..data import model_dataset, run_reduction

    for severity in severities:
        if severity not in SEVERITIES:
            raise ConvscopeError(f"severity must be an integer from 1 to 5, got {severity!r}")
    if isinstance(data, (str, Path, torch.utils.data.Dataset, torch.utils.data.DataLoader)):
        dataset = model_dataset(model, data, size, preprocess, label_file)
        groups = getattr(dataset, "groups", None)
        if groups is not None:
            present = sorted({g[0] for g in groups})
            missing = [c for c in corruptions if c not in present]
            if missing:
                raise ConvscopeError(
                    f"the corruption files have no {', '.join(missing)}; they have {', '.join(present)}"
                )
        reduction = CorruptionReduction(model, corruptions, severities, seed, groups)
        reduced = run_reduction(
            reduction,
            model,
            dataset,
            "corruptions",
            batch_size=batch_size,
            workers=workers,
            strict=strict,
            resume=resume,
            shard_batches=shard_batches,
            engine=engine,
            address=address,
            progress=progress,
        )
        return reduction.result(reduced.state, reduced.skips.items, clean)
    reduction = CorruptionReduction(model, corruptions, severities, seed)
    state = reduction.start()
    count = 0
    with progress_bar(total or 0, "corruptions", progress) as advance:
        for number, item in enumerate(data):
            images, labels = (item.images, item.labels) if isinstance(item, Batch) else item
            batch = Batch(images, torch.as_tensor(labels).long().cpu(), [], torch.arange(count, count + len(images)))
            reduction.update(state, batch, number)
            count += len(images)
            advance(len(images))
    if count == 0:
        raise ConvscopeError("no images to evaluate")
    return reduction.result(state, (), clean)
