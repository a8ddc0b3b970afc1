"""Corruption errors, CE, mCE and relative mCE of a classifier (Hendrycks & Dietterich 2019).

For each corruption c and severity s the top-1 error E(f, s, c) on corrupted copies of the
images; CE_c = sum_s E(f, s, c) / sum_s E(base, s, c), mCE = mean of CE_c over the 15
benchmark corruptions, relative CE_c = sum_s (E(f, s, c) - E(f, clean)) /
sum_s (E(base, s, c) - E(base, clean)). The baseline is AlexNet with the errors published in
the paper (per corruption, averaged over severities) or any model evaluated on the same images.

Deviation: ImageNet-C is a fixed set of JPEG files made once; here the corruptions are drawn on
the fly (seeded, so two models see the same corrupted images) on whatever images are given, so
the AlexNet normalisation is only meaningful on ImageNet validation images.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..checks import check_images, model_device
from ..errors import ConvscopeError
from ..hooks import frozen
from .corruptions import BENCHMARK_CORRUPTIONS, SEVERITIES, corrupt
from .progress import progress_bar

ALEXNET_ERRORS = {
    "gaussian_noise": .886428, "shot_noise": .894468, "impulse_noise": .922640, "defocus_blur": .819880,
    "glass_blur": .826268, "motion_blur": .785948, "zoom_blur": .798360, "snow": .866816, "frost": .826572,
    "fog": .819324, "brightness": .564592, "contrast": .853204, "elastic_transform": .646056,
    "pixelate": .717840, "jpeg_compression": .606500,
}
"""AlexNet's ImageNet-C top-1 errors averaged over the 5 severities (Hendrycks & Dietterich 2019)."""
ALEXNET_CLEAN_ERROR = 0.4348


@dataclass
class CorruptionErrors:
    """Top-1 errors of one model: ``clean`` and ``errors[corruption][severity - 1]``."""

    model_name: str
    clean: float
    errors: dict[str, list[float]] = field(default_factory=dict)
    count: int = 0

    def mean_error(self, name: str) -> float:
        return sum(self.errors[name]) / len(self.errors[name])

    def corruption_error(self, name: str, baseline: CorruptionErrors | None = None, relative: bool = False) -> float:
        """CE (or relative CE) of one corruption against ``baseline`` (AlexNet's published errors when None)."""
        ours = self.errors[name]
        if baseline is None:
            if name not in ALEXNET_ERRORS:
                raise ConvscopeError(f"AlexNet's published errors cover the 15 benchmark corruptions, not {name!r}")
            base, base_clean = [ALEXNET_ERRORS[name]] * len(ours), ALEXNET_CLEAN_ERROR
        else:
            base, base_clean = baseline.errors[name], baseline.clean
        if relative:
            denominator = sum(e - base_clean for e in base)
            return sum(e - self.clean for e in ours) / denominator if denominator else float("nan")
        denominator = sum(base)
        return sum(ours) / denominator if denominator else float("nan")

    def mce(self, baseline: CorruptionErrors | None = None, relative: bool = False) -> float:
        """Mean CE over the benchmark corruptions that were evaluated."""
        names = [name for name in self.errors if name in BENCHMARK_CORRUPTIONS]
        if not names:
            raise ConvscopeError("mCE needs at least one of the 15 benchmark corruptions")
        return sum(self.corruption_error(name, baseline, relative) for name in names) / len(names)

    def to_csv(self, path: str | Path, baseline: CorruptionErrors | None = None) -> Path:
        """One row per corruption: errors per severity, mean error, CE and relative CE."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["corruption", *[f"error_s{s}" for s in SEVERITIES[:len(next(iter(self.errors.values())))]],
                             "mean_error", "ce", "relative_ce"])
            writer.writerow(["clean", *[f"{self.clean:.4f}"] * len(next(iter(self.errors.values()))),
                             f"{self.clean:.4f}", "", ""])
            for name, errors in self.errors.items():
                scored = name in BENCHMARK_CORRUPTIONS or baseline is not None
                ce = f"{self.corruption_error(name, baseline):.4f}" if scored else ""
                relative = f"{self.corruption_error(name, baseline, relative=True):.4f}" if scored else ""
                writer.writerow([name, *[f"{e:.4f}" for e in errors], f"{self.mean_error(name):.4f}", ce, relative])
        return path

    def plot(self, path: str | Path, baseline: CorruptionErrors | None = None) -> Path:
        """Error vs severity, one panel per corruption (the baseline dashed when given)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.errors)
        columns = min(5, len(names))
        rows = (len(names) + columns - 1) // columns
        figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.2 * rows), squeeze=False, sharey=True)
        for axis, name in zip(axes.flat, names):
            severities = list(range(1, len(self.errors[name]) + 1))
            axis.plot([0] + severities, [self.clean] + self.errors[name], "o-", label=self.model_name)
            if baseline is not None and name in baseline.errors:
                axis.plot([0] + severities, [baseline.clean] + baseline.errors[name], "s--", label=baseline.model_name)
            axis.set_title(name.replace("_", " "), fontsize=9)
            axis.set_ylim(0, 1)
            axis.set_xticks([0] + severities)
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[len(names):]:
            axis.axis("off")
        axes[0, 0].set_ylabel("top-1 error")
        axes[0, 0].legend(fontsize=7)
        figure.suptitle(f"{self.model_name}: error vs severity (0 = clean), mCE {self.mce(baseline) * 100:.1f}%"
                        if any(n in BENCHMARK_CORRUPTIONS for n in names) else f"{self.model_name}: error vs severity")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return Path(path)


@torch.no_grad()
def corruption_errors(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                      seed: int = 0, progress: bool = True, total: int | None = None) -> CorruptionErrors:
    """Top-1 error of ``model`` on clean and corrupted copies of labelled image batches.

    Args:
        model: classifier taking RGB in [0, 1].
        batches: iterable of ``(images (N, 3, H, W) in [0, 1], labels LongTensor[N])``; re-iterated
            once (materialised to a list first).
        corruptions, severities: what to evaluate (default: the 15 benchmark corruptions x 5).
        seed: corruption seed (batch ``b`` of corruption ``c`` at severity ``s`` uses a seed derived
            from it, so two models see the same corrupted images).
        progress: show a progress bar (Ctrl-C keeps the corruptions finished so far).

    >>> result = corruption_errors(model, [(images, labels)], ["fog", "contrast"])
    >>> result.mce()
    """
    batches = list(batches)
    if not batches:
        raise ConvscopeError("no images to evaluate")
    device = model_device(model)

    def error_rate(transform) -> float:
        wrong = seen = 0
        for index, (images, labels) in enumerate(batches):
            images = transform(check_images(images).to(device), index)
            wrong += int((model(images).argmax(-1).cpu() != labels.cpu()).sum())
            seen += len(labels)
        return wrong / seen

    with frozen(model):
        result = CorruptionErrors(getattr(model, "name", type(model).__name__), error_rate(lambda x, _: x),
                                  count=sum(len(labels) for _, labels in batches))
        with progress_bar(len(corruptions) * len(severities), "corruptions", progress) as advance:
            for number, name in enumerate(corruptions):
                errors = []
                for severity in severities:
                    errors.append(error_rate(lambda x, index, name=name, severity=severity, number=number: corrupt(
                        x, name, severity, seed=seed + 1000 * number + 100 * severity + index)))
                    advance(1, name)
                result.errors[name] = errors
    return result
