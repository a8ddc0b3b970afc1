"""One dataset layer for every dataset-level command.

A dataset spec (a folder in any of the usual layouts, ``samples:imagenet``, ``cifar10:ROOT``,
ImageNet-C / CIFAR-10-C as released, or a ``Dataset`` from Python) resolves with
:func:`open_dataset` to a ``Dataset`` of ``(image (3, H, W) in [0, 1], label | None, id)``;
:func:`stream` batches it through one ``DataLoader`` (unreadable files skipped and named, or
``strict``); :func:`reduce_dataset` reduces a computation over it shard by shard, resumable
from per-shard files, locally or on Ray; :func:`run_reduction` is that for a model (its
size and class names, a progress bar), the one call of every dataset-level command.
"""

from .classes import ClassNames, folder_classes, imagenet_wnids
from .specs import (
    PREPROCESS,
    SAMPLE_SETS,
    Preprocess,
    open_dataset,
    read_label_file,
    sample_dataset,
    samples_folder,
    take,
    labelled_pairs,
)
from .stream import (
    NO_LABEL,
    Batch,
    Reduced,
    ModelReduction,
    Reduction,
    SkipLog,
    default_workers,
    loader_options,
    loader_replay_problem,
    pins_memory,
    reduce_dataset,
    stream,
)
from .run import model_dataset, run_reduction

__all__ = [
    "ClassNames",
    "folder_classes",
    "imagenet_wnids",
    "PREPROCESS",
    "SAMPLE_SETS",
    "Preprocess",
    "open_dataset",
    "read_label_file",
    "sample_dataset",
    "samples_folder",
    "take",
    "labelled_pairs",
    "NO_LABEL",
    "Batch",
    "Reduced",
    "ModelReduction",
    "Reduction",
    "SkipLog",
    "default_workers",
    "reduce_dataset",
    "loader_replay_problem",
    "loader_options",
    "pins_memory",
    "stream",
    "model_dataset",
    "run_reduction",
]
