"""The one call behind every dataset-level computation: spec -> dataset -> progress bar -> reduction.

``attack-eval`` (:func:`convscope.attacks.evaluate.evaluate_attack`), ``robustness``
(:func:`convscope.robustness.imagenet_c.corruption_errors`), batch ``explain`` and ``sanity``
(:mod:`convscope.attribution.batch`) differ only in their :class:`~convscope.data.Reduction`;
opening the data for the model (its input size and class names), drawing the bar and running
:func:`~convscope.data.reduce_dataset` on the model's device happen here, once.
"""

from __future__ import annotations

__all__ = ["model_dataset", "run_reduction"]

from pathlib import Path
from typing import Sequence

import torch

from ..checks import model_device
from ..progress import progress_bar
from .specs import open_dataset
from .stream import Reduced, Reduction, reduce_dataset


def model_dataset(
    model,
    data,
    size: int | None = None,
    preprocess: str = "crop",
    label_file: str | Path | None = None,
    corruptions: Sequence[str] | None = None,
):
    """:func:`~convscope.data.open_dataset` for ``model``: at ``size`` (default its ``input_size``
    or 224), class folders and label files resolved against its class names. A dataset the data
    layer already opened, and a user's ``DataLoader`` (its batches are taken as they come), are
    returned as they are."""
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    return open_dataset(
        data,
        size or getattr(model, "input_size", 224),
        preprocess,
        labels=getattr(model, "labels", None),
        label_file=label_file,
        corruptions=corruptions,
    )


def run_reduction(
    reduction: Reduction,
    model,
    data,
    description: str,
    *,
    size: int | None = None,
    preprocess: str = "crop",
    label_file: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    strict: bool = False,
    resume: str | Path | None = None,
    shard_batches: int = 8,
    engine: str = "local",
    address: str | None = None,
    progress: bool = False,
) -> Reduced:
    """Run ``reduction`` over ``data`` (a spec or a dataset, see :func:`model_dataset`) on the
    model's device with a progress bar named ``description``; the options are
    :func:`~convscope.data.reduce_dataset`'s. Ctrl-C passes through (finished shards are in
    ``resume``); ``Reduced.total`` is the number of items of the dataset.

    >>> reduced = run_reduction(AttackReduction(model, "fgsm", 2 / 255), model, "samples:imagenet", "attack-eval")
    """
    dataset = model_dataset(model, data, size, preprocess, label_file)
    items = dataset.dataset if isinstance(dataset, torch.utils.data.DataLoader) else dataset
    with progress_bar(
        len(items) if hasattr(items, "__len__") else None, description, progress, interrupted=None
    ) as advance:
        return reduce_dataset(
            reduction,
            dataset,
            batch_size,
            model_device(model),
            workers,
            strict,
            resume,
            shard_batches=shard_batches,
            engine=engine,
            address=address,
            progress=advance,
        )
