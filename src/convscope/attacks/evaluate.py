"""Attack a whole folder: success rate and robust accuracy (``convscope attack-eval``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from ..checks import model_device
from ..errors import ConvscopeError
from ..images import ImageBatch
from ..targets import class_index
from . import attack


@dataclass
class AttackEvaluation:
    """Totals over a data set.

    ``clean_accuracy`` and ``robust_accuracy`` compare predictions with the labels (the
    class named by each image's folder when it names one, else the clean prediction, in
    which case clean accuracy is 1 by definition); ``success_rate`` is the fraction of
    images whose attack succeeded.
    """

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


def folder_label(path: Path, labels) -> int | None:
    """The class named by the image's parent folder (id or name), or None."""
    try:
        return class_index(path.parent.name, labels)
    except ConvscopeError:
        return None


def evaluate_attack(model, batches: Iterable[ImageBatch], method: str = "pgd", eps: float | None = None,
                    progress: bool = False, total: int | None = None, **options) -> AttackEvaluation:
    """Run ``attack`` over batches of images and aggregate the record (see :class:`AttackEvaluation`)."""
    from rich.progress import Progress

    counts = dict(images=0, labelled=0, clean=0, robust=0, success=0, queries=0)
    linf, l2, seconds, black_box = 0.0, 0.0, 0.0, False
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"attack-eval {method}", total=total)
        try:
            for batch in batches:
                x = batch.images.to(model_device(model))
                given = [folder_label(p, getattr(model, "labels", None)) for p in batch.paths]
                with torch.no_grad():
                    predicted = model(x).argmax(dim=1)
                labels = torch.tensor([g if g is not None else int(p) for g, p in zip(given, predicted)], device=x.device)
                result = attack(model, x, labels, method=method, eps=eps, **options)
                counts["images"] += x.shape[0]
                counts["labelled"] += sum(g is not None for g in given)
                counts["clean"] += int((predicted == labels).sum())
                counts["robust"] += int((result.predicted == labels).sum())
                counts["success"] += int(result.success.sum())
                if result.queries is not None:
                    black_box, counts["queries"] = True, counts["queries"] + int(result.queries.sum())
                linf += float(result.linf.sum())
                l2 += float(result.l2.sum())
                seconds += result.seconds
                bar.advance(task, x.shape[0])
        except KeyboardInterrupt:
            import warnings

            warnings.warn(f"attack-eval interrupted after {counts['images']} images", RuntimeWarning, stacklevel=2)
    n = counts["images"]
    if n == 0:
        raise ConvscopeError("no images were attacked")
    return AttackEvaluation(method, eps, n, counts["labelled"], counts["clean"] / n, counts["robust"] / n,
                            counts["success"] / n, linf / n, l2 / n, counts["queries"] / n if black_box else None,
                            seconds)
