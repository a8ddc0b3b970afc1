"""Attack a whole dataset: clean accuracy, robust accuracy and success rate (``convscope attack-eval``).

As the attack papers report it (e.g. Madry et al. 2018, Croce & Hein 2020): the labels are the
ground truth where the data has them (else the model's clean predictions, and the report says
so); clean accuracy is over all images; only the images classified correctly to begin with are
attacked; robust accuracy is the fraction of *all* images still classified correctly after the
attack; the success rate is the fraction of the attacked (initially correct) images whose
attack succeeded. Mean distances and queries are over the attacked images.

The data streams through :func:`convscope.data.reduce_dataset` (bounded memory, unreadable files
skipped and named, resumable shards, ``local`` or ``ray`` engine); batch ``b`` of the dataset is
attacked with seed ``seed + b`` wherever it runs.
"""

from __future__ import annotations

__all__ = ["AttackEvaluation", "AttackReduction", "COUNTS", "evaluate_attack", "folder_label"]

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from ..checks import model_device
from ..data import Batch, ModelReduction, SkipLog, run_reduction
from ..errors import ConvscopeError
from ..images import ImageBatch
from ..state import frozen
from ..targets import class_index
from . import attack

COUNTS = (
    "images",
    "labelled",
    "clean",
    "top5",
    "attacked",
    "success",
    "robust",
    "linf",
    "l2",
    "queries",
    "black_box",
    "seconds",
)


@dataclass
class AttackEvaluation:
    """Totals over a data set (see the module notes for the definitions)."""

    method: str
    eps: float | None
    images: int
    labelled: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float
    mean_linf: float
    mean_l2: float
    mean_queries: float | None
    seconds: float
    attacked: int = 0
    top5_accuracy: float = float("nan")
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed_shards: int = 0
    rows: list[dict] = field(default_factory=list, repr=False)

    @property
    def robust_interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the robust accuracy (binomial over the images)."""
        from .autoattack import wilson_interval

        return wilson_interval(round(self.robust_accuracy * self.images), self.images)

    def write_csv(self, path: str | Path) -> Path:
        """One row per image: id, label, clean and adversarial prediction, robust, broken_by, L∞, L2."""
        import csv

        columns = (
            "id",
            "label",
            "clean_prediction",
            "adversarial_prediction",
            "clean_correct",
            "robust",
            "broken_by",
            "linf",
            "l2",
        )
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: row.get(k) for k in columns})
        return Path(path)

    def robustbench_entry(self, model: str, dataset: str, version: str | None = None) -> dict:
        """A RobustBench-style record (model, dataset, threat model, eps, clean and robust accuracy, attack)."""
        norm = "L2" if self.method.endswith("l2") or (self.options or {}).get("norm") in ("2", "l2") else "Linf"
        low, high = self.robust_interval
        return {
            "name": model,
            "dataset": dataset,
            "threat_model": norm,
            "eps": self.eps,
            "eps_255": None if self.eps is None or norm == "L2" else round(self.eps * 255, 4),
            "clean_acc": round(100 * self.clean_accuracy, 2),
            ("autoattack_acc" if self.method == "autoattack" else "robust_acc"): round(100 * self.robust_accuracy, 2),
            "robust_acc_95ci": [round(100 * low, 2), round(100 * high, 2)],
            "attack": self.method,
            "attack_version": version,
            "n_examples": self.images,
            "ground_truth_labels": self.ground_truth,
        }

    @property
    def ground_truth(self) -> bool:
        """True when every image had a label (else some were scored against the model's predictions)."""
        return self.labelled == self.images

    options: dict | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("rows", "options")}


class AttackReduction(ModelReduction):
    """Per-batch counts of an attack over a dataset (merged by addition)."""

    def __init__(self, model, method: str, eps: float | None, seed: int = 0, **options):
        from .registry import ATTACKS

        method = ATTACKS.canonical(method)
        self.model, self.method, self.eps, self.seed, self.options = model, method, eps, seed, options

    def key(self) -> dict:
        return {
            "method": self.method,
            "eps": self.eps,
            "seed": self.seed,
            "options": self.options,
            **self.model_key(),
        }

    def start(self) -> dict:
        return {**{name: 0 for name in COUNTS}, "rows": []}

    def update(self, state: dict, batch: Batch, number: int) -> None:
        device = model_device(self.model)
        x = batch.images.to(device)
        given = batch.labels.to(device)
        with torch.no_grad(), frozen(self.model):  # eval mode, as the attack's own passes
            logits = self.model(x)
        predicted = logits.argmax(dim=1)
        labels = torch.where(given >= 0, given, predicted)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct = predicted == labels
        state["images"] += x.shape[0]
        state["labelled"] += int((given >= 0).sum())
        state["clean"] += int(correct.sum())
        state["top5"] += int((top5 == labels[:, None]).any(dim=1).sum())
        rows = [
            {
                "id": batch.ids[i],
                "label": int(labels[i]),
                "clean_prediction": int(predicted[i]),
                "adversarial_prediction": int(predicted[i]),
                "clean_correct": bool(correct[i]),
                "robust": False,
                "broken_by": None if correct[i] else "clean",
                "linf": 0.0,
                "l2": 0.0,
            }
            for i in range(x.shape[0])
        ]
        state["rows"].extend(rows)  # in place: a copy per batch would cost O(images^2) over a dataset
        if not bool(correct.any()):
            return
        ids = correct.nonzero()[:, 0].tolist()
        if self.method == "autoattack":  # the protocol itself, to record which attack broke each image
            from .autoattack import autoattack
            from .result import distances

            eps = 8 / 255 if self.eps is None else self.eps
            found = autoattack(self.model, x[correct], labels[correct], eps, seed=self.seed + number, **self.options)
            with torch.no_grad():
                adversarial = self.model(found.x_adv).argmax(-1)
            linf, l2, _ = distances(x[correct], found.x_adv)
            success, broken, seconds, queries = ~found.robust, found.broken_by, found.seconds, None
        else:
            result = attack(
                self.model,
                x[correct],
                labels[correct],
                method=self.method,
                eps=self.eps,
                seed=self.seed + number,
                clean_logits=logits[correct],
                **self.options,
            )
            adversarial, linf, l2, seconds, queries = (
                result.predicted,
                result.linf,
                result.l2,
                result.seconds,
                result.queries,
            )
            success = result.success
            broken = [self.method if ok else None for ok in (result.predicted != labels[correct]).tolist()]
        robust = adversarial == labels[correct]
        for j, i in enumerate(ids):
            rows[i].update(
                adversarial_prediction=int(adversarial[j]),
                robust=bool(robust[j]),
                broken_by=None if robust[j] else broken[j],
                linf=float(linf[j]),
                l2=float(l2[j]),
            )
        state["attacked"] += int(correct.sum())
        state["success"] += int(success.sum())
        state["robust"] += int(robust.sum())
        state["linf"] += float(linf.sum())
        state["l2"] += float(l2.sum())
        if queries is not None:
            state["black_box"] = 1
            state["queries"] += int(queries.sum())
        state["seconds"] += seconds

    def merge(self, total: dict, part: dict) -> dict:
        for name, value in part.items():
            total[name] = max(total[name], value) if name == "black_box" else total[name] + value
        return total

    def report(self, state: dict, skips: SkipLog | None = None, resumed: int = 0) -> AttackEvaluation:
        n, attacked = state["images"], state["attacked"]
        if n == 0:
            raise ConvscopeError("no images were attacked")
        return AttackEvaluation(
            self.method,
            self.eps,
            n,
            state["labelled"],
            state["clean"] / n,
            state["robust"] / n,
            state["success"] / attacked if attacked else float("nan"),
            state["linf"] / attacked if attacked else float("nan"),
            state["l2"] / attacked if attacked else float("nan"),
            state["queries"] / attacked if state["black_box"] and attacked else None,
            state["seconds"],
            attacked,
            state["top5"] / n,
            list(skips.items) if skips else [],
            resumed,
            list(state.get("rows", [])),
            dict(self.options),
        )


def folder_label(path: Path, labels) -> int | None:
    """The class named by the image's parent folder (id or name), or None."""
    from ..data import ClassNames

    found = ClassNames(labels).index(path.parent.name)
    if found is None:
        try:
            return class_index(path.parent.name, labels)
        except ConvscopeError:
            return None
    return found


def _as_batches(model, batches: Iterable) -> Iterable[Batch]:
    """Old-style iterables of :class:`~convscope.images.ImageBatch` or ``(images, labels)`` -> batches."""
    seen = 0
    for item in batches:
        if isinstance(item, Batch):
            yield item
            continue
        if isinstance(item, ImageBatch):
            images = item.images
            given = [folder_label(p, getattr(model, "labels", None)) for p in item.paths]
            labels = torch.tensor([-1 if g is None else g for g in given], dtype=torch.long)
            ids = [str(p) for p in item.paths]
        else:
            images, labels = item
            labels = torch.as_tensor(labels).long()
            ids = [str(i) for i in range(seen, seen + len(images))]
        yield Batch(images, labels, ids, torch.arange(seen, seen + len(images)))
        seen += len(images)


def evaluate_attack(
    model,
    data,
    method: str = "pgd",
    eps: float | None = None,
    progress: bool = False,
    total: int | None = None,
    seed: int = 0,
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
    **options,
) -> AttackEvaluation:
    """Attack every image of ``data`` and aggregate the record (see the module notes).

    Args:
        data: a dataset spec (folder, ``samples:imagenet``, ...) or ``Dataset`` (see
            :func:`convscope.data.open_dataset`), a ``DataLoader`` of ``(images, labels)``
            (resumable when it does not shuffle), or an iterable of batches (``ImageBatch`` from
            :func:`~convscope.images.load_folder`, or ``(images, labels)``; no resuming then).
        strict: stop at the first unreadable file instead of skipping it.
        resume: folder for per-shard partial results (the same call continues an interrupted run).
        engine, address: ``local`` or ``ray`` (the Ray actor pool kept for the process, GPUs when present).
        **options: passed to the attack (``steps``, ``alpha``, ...).

    >>> report = evaluate_attack(model, "samples:imagenet", "pgd", 2 / 255, steps=10)
    >>> report.clean_accuracy, report.robust_accuracy, report.success_rate
    """
    reduction = AttackReduction(model, method, eps, seed, **options)
    if isinstance(data, (str, Path, torch.utils.data.Dataset, torch.utils.data.DataLoader)):
        reduced = run_reduction(
            reduction,
            model,
            data,
            f"attack-eval {method}",
            size=size,
            preprocess=preprocess,
            label_file=label_file,
            batch_size=batch_size,
            workers=workers,
            strict=strict,
            resume=resume,
            shard_batches=shard_batches,
            engine=engine,
            address=address,
            progress=progress,
        )
        return reduction.report(reduced.state, reduced.skips, reduced.resumed)
    state = reduction.start()
    for number, batch in enumerate(_as_batches(model, data)):
        reduction.update(state, batch, number)
    return reduction.report(state)
