"""Transfer learning: a pretrained classifier's features on a new, small labelled image set.

Three ways to train the same architecture (Yosinski et al. 2014; Razavian et al. 2014;
the CS231n transfer-learning notes):

* ``features`` — the pretrained network is a fixed feature extractor (eval mode, weights
  frozen); only a new linear head is trained;
* ``finetune`` — start from the pretrained weights with a new head and train everything;
* ``scratch`` — the same architecture with every layer re-initialised (the baseline).

The new head replaces the network's last ``nn.Linear`` (timm's ``classifier``,
torchvision's ``fc`` or ``classifier.6``). The user's model is never changed: training
works on a deep copy. Data are in-memory :class:`ImageSet` objects, read from any labelled
dataset spec through the data layer (:func:`dataset_split`: class folders, ``root/train/CLASS``
+ ``root/val/CLASS``, ``samples:cifar10``, ``cifar10-train:ROOT``, ...) or built offline by
:func:`photo_dataset` from scikit-image's bundled photos.
"""

from __future__ import annotations

__all__ = [
    "accuracy",
    "augment",
    "dataset_split",
    "finetune",
    "ImageSet",
    "load_image_folder",
    "MODES",
    "photo_dataset",
    "plot_curves",
    "recompute_batchnorm",
    "replace_head",
    "TransferHistory",
    "write_image_folder",
]

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConvscopeError
from .images import PHOTOS, TEXTURES, sample_array, save_image
from .models import ImageClassifier, _side, save_checkpoint, set_head

MODES = ("features", "finetune", "scratch")


@dataclass
class ImageSet:
    """Images (N, 3, H, W) in [0, 1], labels (N,) int64, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]


def _crops(array, count: int, size: int, columns: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    picture = torch.as_tensor(array, dtype=torch.float32) / 255.0
    picture = picture[None].repeat(3, 1, 1) if picture.ndim == 2 else picture.permute(2, 0, 1)[:3]
    height, width = picture.shape[-2:]
    left_edge, right_edge = int(columns[0] * width), int(columns[1] * width)
    crops = []
    for _ in range(count):
        side = int(min(height, right_edge - left_edge) * (0.35 + 0.5 * torch.rand(1, generator=generator).item()))
        top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
        left = int(torch.randint(left_edge, right_edge - side + 1, (1,), generator=generator))
        piece = picture[None, :, top : top + side, left : left + side]
        crops.append(F.interpolate(piece, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(crops).clamp(0, 1)


def photo_dataset(
    per_class: int = 20, size: int = 64, seed: int = 0, val_per_class: int | None = None
) -> tuple[ImageSet, ImageSet]:
    """An offline labelled set: one class per bundled photo or texture, random square crops.

    Train crops come from the left 55 % of each picture and validation crops from the
    right 45 %, so no validation pixel was seen in training.

    >>> train, val = photo_dataset(per_class=4, size=64)
    >>> train.images.shape, len(train.classes)
    (torch.Size([40, 3, 64, 64]), 10)
    """
    classes = PHOTOS + TEXTURES
    generator = torch.Generator().manual_seed(seed)
    val_count = val_per_class or max(1, per_class // 2)
    sets = []
    for columns, count in (((0.0, 0.55), per_class), ((0.55, 1.0), val_count)):
        images = torch.cat([_crops(sample_array(name), count, size, columns, generator) for name in classes])
        labels = torch.arange(len(classes)).repeat_interleave(count)
        sets.append(ImageSet(images, labels, classes))
    return sets[0], sets[1]


def write_image_folder(data: ImageSet, root: str | Path) -> Path:
    """Write ``root/CLASS/00000.png`` ... (the layout :func:`load_image_folder` reads)."""
    root = Path(root)
    for index in range(len(data)):
        save_image(data.images[index : index + 1], root / data.classes[int(data.labels[index])] / f"{index:05d}.png")
    return root


MEMORY_LIMIT = 4 << 30  # bytes of float32 images a training set may hold in memory


def dataset_split(
    data,
    size: int = 64,
    val=None,
    val_fraction: float = 0.3,
    seed: int = 0,
    preprocess: str = "crop",
    limit: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    label_file=None,
):
    """(train, val, skipped) from any labelled dataset spec of :func:`convscope.data.open_dataset`.

    ``root/train/CLASS`` + ``root/val/CLASS`` are the two sets; ``val`` names a second spec
    (``cifar10-train:ROOT`` with ``val="cifar10:ROOT"``); otherwise a seeded per-class split of
    ``data`` (``val_fraction`` of each class, at least one image of a class with two or more).
    Classes are those present, numbered in the order of their ids (class folders: sorted names),
    named by their folder (else their id). Images are read through the data layer's streaming
    loader (unreadable files skipped and returned in ``skipped``, or ``strict``) into memory,
    the first ``limit`` of each set; a set over 4 GiB of float32 pixels is refused (use ``limit``).
    """
    from .data import SkipLog, open_dataset, take

    root = Path(data) if isinstance(data, (str, Path)) else None
    if val is None and root is not None and (root / "train").is_dir() and (root / "val").is_dir():
        data, val = root / "train", root / "val"
    skips = SkipLog()
    opened = [
        open_dataset(spec, size, preprocess, label_file=label_file) for spec in ([data] if val is None else [data, val])
    ]
    if limit is not None:
        opened = [take(dataset, limit) for dataset in opened]
    sets = [_in_memory(dataset, size, workers, strict, skips) for dataset in opened]
    ids = sorted(set(sets[0][2]))
    names = tuple(sets[0][2][i] for i in ids)
    if val is None:
        whole = _numbered(sets[0], names)
        train, held_out = _split(whole, val_fraction, seed)
    else:
        train, held_out = _numbered(sets[0], names), _numbered(sets[1], names, f"{val}: ")
    return train, held_out, skips


def _in_memory(dataset, size, workers, strict, skips) -> tuple[torch.Tensor, torch.Tensor, dict[int, str]]:
    """A labelled dataset's images and labels in memory, and its class names by id."""
    from .data import stream

    count = len(dataset)
    if count * 3 * size * size * 4 > MEMORY_LIMIT:
        raise ConvscopeError(
            f"{count} images at {size} px need {count * 3 * size * size * 4 / 2**30:.1f} GiB in memory; "
            "train on a part of them (--limit)"
        )
    labels = getattr(dataset, "labels", None)
    if labels is not None and any(label is None for label in labels):
        missing = sum(label is None for label in labels)
        raise ConvscopeError(
            f"training needs a label for every image; {missing} of {count} have none "
            "(class subfolders, a label file or a labelled set)"
        )
    images, targets = [], []
    for batch in stream(dataset, 64, workers, strict=strict, skips=skips):
        if bool((batch.labels < 0).any()):
            raise ConvscopeError("training needs a label for every image; this dataset has unlabelled ones")
        images.append(batch.images)
        targets.append(batch.labels)
    if not images:
        raise ConvscopeError(f"no readable images ({skips.summary()})")
    found = torch.cat(targets)
    folders = getattr(getattr(dataset, "dataset", dataset), "classes", None) or {}
    folders = dict(enumerate(folders)) if isinstance(folders, (list, tuple)) else dict(folders)
    return torch.cat(images), found, {int(i): str(folders.get(int(i), int(i))) for i in found.unique()}


def _numbered(loaded, names: tuple[str, ...], where: str = "") -> ImageSet:
    """Relabel to 0..K-1 by class name (the training set's order)."""
    images, labels, classes = loaded
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(classes.values()) - set(index))
    if unknown:
        raise ConvscopeError(f"{where}classes {', '.join(unknown[:3])} are not in the training set")
    lookup = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
    for label, name in classes.items():
        lookup[label] = index[name]
    return ImageSet(images, lookup[labels], names)


def _split(data: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """A seeded per-class split: ``val_fraction`` of each class (one at least, none of a single image)."""
    generator = torch.Generator().manual_seed(seed)
    val_index = []
    for label in range(len(data.classes)):
        members = (data.labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        val_index += members[: max(1, round(val_fraction * len(members)))].tolist() if len(members) > 1 else []
    is_val = torch.zeros(len(data), dtype=torch.bool)
    is_val[val_index] = True
    return (
        ImageSet(data.images[~is_val], data.labels[~is_val], data.classes),
        ImageSet(data.images[is_val], data.labels[is_val], data.classes),
    )


def load_image_folder(
    root: str | Path, size: int = 64, val_fraction: float = 0.3, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """(train, val) from ``root/train/CLASS`` + ``root/val/CLASS``, or a seeded per-class split of
    ``root/CLASS`` (images squashed to ``size``; :func:`dataset_split` for any spec)."""
    root = Path(root)
    if not root.is_dir():
        raise ConvscopeError(f"no such folder: {root}")
    train, val, _ = dataset_split(root, size, val_fraction=val_fraction, seed=seed, preprocess="resize", workers=0)
    return train, val


def replace_head(network: nn.Module, num_classes: int) -> str:
    """Replace the last ``nn.Linear`` of ``network`` by a fresh one with ``num_classes`` outputs; returns its name."""
    return set_head(network, num_classes)


def _reinitialise(network: nn.Module) -> None:
    for module in network.modules():
        if module is not network and hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random crop of 75-100 % of the side, resized back (per image)."""
    size = images.shape[-1]
    out = []
    for image in images:
        if torch.rand(1, generator=generator).item() < 0.5:
            image = image.flip(-1)
        side = int(size * (0.75 + 0.25 * torch.rand(1, generator=generator).item()))
        top, left = (int(torch.randint(0, size - side + 1, (1,), generator=generator)) for _ in range(2))
        out.append(
            F.interpolate(
                image[None, :, top : top + side, left : left + side],
                size=(size, size),
                mode="bilinear",
                align_corners=False,
            )
        )
    return torch.cat(out)


@dataclass
class TransferHistory:
    """Per-epoch train loss, train accuracy and validation accuracy of :func:`finetune`."""

    mode: str
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def best_val_accuracy(self) -> float:
        return max(self.val_accuracy, default=float("nan"))


def accuracy(model: nn.Module, data: ImageSet, batch_size: int = 32) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode, restored after)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            correct = sum(
                int(
                    (
                        model(data.images[i : i + batch_size].to(device)).argmax(1).cpu()
                        == data.labels[i : i + batch_size]
                    ).sum()
                )
                for i in range(0, len(data), batch_size)
            )
    finally:
        model.train(was_training)
    return correct / max(1, len(data))


def recompute_batchnorm(model: nn.Module, data: ImageSet, batch_size: int, device: torch.device) -> None:
    """Set every BatchNorm's running statistics to the exact mean/variance over ``data`` with
    the current weights ("precise BN", Wu & Johnson 2021; ``torch.optim.swa_utils.update_bn``):
    from scratch, the weights move so far in a few dozen steps that the momentum averages
    still describe the early weights, and the network predicts one class in eval mode. Used
    for ``scratch`` only: on ``finetune`` it lowered the validation accuracy (0.94 -> 0.60 on
    ``generated:photos``), whose momentum statistics stay close to the pretrained ones."""
    batches = [data.images[start : start + batch_size].to(device) for start in range(0, len(data), batch_size)]
    torch.optim.swa_utils.update_bn(batches, model)


def finetune(
    model: ImageClassifier,
    train: ImageSet,
    val: ImageSet,
    mode: str = "features",
    epochs: int = 5,
    lr: float | None = None,
    batch_size: int = 32,
    augmentation: bool = True,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[ImageClassifier, TransferHistory]:
    """Train a copy of ``model`` with a new head on ``train``; score ``val`` after every epoch.

    Args:
        model: a pretrained classifier (e.g. the embedded EfficientNet-Lite0); not changed.
        mode: ``features`` (frozen backbone, train the head), ``finetune`` (train all from
            the pretrained start) or ``scratch`` (train all from a random start).
        lr: Adam learning rate (default: 1e-3 for ``features``/``scratch``, 3e-4 for ``finetune``).
        augmentation: random flips and crops (:func:`augment`).
        checkpoint: save a self-describing checkpoint (:func:`~convscope.models.save_checkpoint`:
            ``X.safetensors`` + ``X.json`` with the architecture, new head, labels, input size
            and normalisation) here at the best val accuracy; ``load_model(X)`` gets it back.
        progress: rich progress bar; Ctrl-C stops cleanly and returns what was trained.

    Data-parallel under ``torchrun`` (``WORLD_SIZE`` > 1; the process group, buffer sharing and
    sharded evaluation of :mod:`convscope.robustness.evaluation`, as ``train``): ``batch_size`` is
    per process; every rank draws the same global batch of ``batch_size`` x world images (same
    order, same augmentation) and trains ``DistributedDataParallel`` on its share, so the run equals
    a single process with that global batch (BatchNorm in ``finetune``/``scratch`` sees each
    rank's share; rank 0's statistics are kept). A last batch with fewer images than ranks is
    left out; validation is sharded and all-reduced; rank 0 writes the checkpoint.

    Returns:
        (the trained :class:`ImageClassifier` with ``labels = train.classes``, its history).

    >>> train, val = photo_dataset()
    >>> trained, history = finetune(load_model(), train, val, mode="features", epochs=3)
    """
    from .progress import progress_bar
    from .robustness.evaluation import evaluate_robustness, join_process_group, rank_and_world, share_buffers
    from .robustness.global_batchnorm import global_batchnorm

    if mode not in MODES:
        raise ConvscopeError(f"unknown mode {mode!r}: choose {', '.join(MODES)}")
    if train.classes != val.classes:
        raise ConvscopeError("train and val sets name different classes")
    torch.manual_seed(seed)
    trained = copy.deepcopy(model)
    trained.labels = list(train.classes)
    head_name = replace_head(trained.network, len(train.classes))
    trained.head_spec = {
        "layer": head_name,
        "in_features": trained.network.get_submodule(head_name).in_features,
        "out_features": len(train.classes),
    }
    if not trained.fixed_size:  # a fixed-size network keeps its size (its forward resizes to it)
        trained.input_size = _side(tuple(train.images.shape[-2:]))
    if mode == "scratch":
        _reinitialise(trained.network)
    head = trained.network.get_submodule(head_name)
    for parameter in trained.parameters():
        parameter.requires_grad_(mode != "features")
    head.requires_grad_(True)
    parameters = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr or (3e-4 if mode == "finetune" else 1e-3))
    distributed = join_process_group()
    rank, world = rank_and_world()
    device = next(trained.parameters()).device
    if distributed and device.type == "cuda":  # one GPU per rank
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        trained.to(device)
    model = nn.parallel.DistributedDataParallel(trained) if distributed else trained
    step = batch_size * world  # the global batch: every rank draws it, augments it and trains on its share
    leftover = len(train) % step  # under DDP a last batch with fewer images than ranks is left out
    count = len(train) - (leftover if distributed and leftover < world else 0)
    held_out = torch.utils.data.TensorDataset(val.images, val.labels)
    generator = torch.Generator().manual_seed(seed)
    history = TransferHistory(mode)
    best = -1.0
    try:
        with progress_bar(epochs * -(-count // step), mode, progress and rank == 0, interrupted=None) as advance:
            for _ in range(epochs):
                trained.train()
                if mode == "features":
                    trained.eval()  # the frozen backbone keeps its BatchNorm statistics
                order = torch.randperm(len(train), generator=generator)
                sums = torch.zeros(2, dtype=torch.float64)  # loss, correct
                # BatchNorm statistics over the global batch, as one process (finetune / scratch)
                with global_batchnorm(distributed and mode != "features"):
                    for start in range(0, count, step):
                        batch = order[start : start + step]
                        images = train.images[batch]
                        images = augment(images, generator) if augmentation else images
                        share = torch.tensor_split(torch.arange(len(batch)), world)[rank]
                        logits = model(images[share].to(device))
                        labels = train.labels[batch][share]
                        # the global batch's mean loss: DDP averages the ranks' gradients, shares may differ by one
                        loss = F.cross_entropy(logits, labels.to(device), reduction="sum") * world / len(batch)
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                        sums += torch.tensor(
                            [loss.item() * len(batch) / world, int((logits.argmax(1).cpu() == labels).sum())]
                        )
                        advance(1, f"loss {loss.item():.3f}")
                if distributed:
                    reduced = sums.to(device)
                    torch.distributed.all_reduce(reduced)
                    sums = reduced.cpu()
                history.loss.append(float(sums[0]) / count)
                history.train_accuracy.append(float(sums[1]) / count)
                share_buffers(trained)  # rank 0's BatchNorm statistics on every rank
                if mode == "scratch":
                    recompute_batchnorm(trained, train, batch_size, device)
                # clean accuracy, sharded across torchrun ranks and all-reduced
                scored = evaluate_robustness(trained, held_out, 0.0, "none", batch_size=batch_size)
                history.val_accuracy.append(scored.clean_accuracy)
                if checkpoint is not None and rank == 0 and history.val_accuracy[-1] > best:
                    best = history.val_accuracy[-1]
                    save_checkpoint(
                        trained,
                        checkpoint,
                        extra={
                            "trained_by": f"finetune --mode {mode}",
                            "val_accuracy": best,
                            "epoch": len(history.val_accuracy),
                        },
                    )
    except KeyboardInterrupt:
        history.interrupted = True
    trained.eval()
    trained.requires_grad_(False)
    return trained, history


def plot_curves(histories: list[TransferHistory], path: str | Path | None = None, title: str = "fine-tuning"):
    """Validation (solid) and training (dashed) accuracy per epoch, one colour per mode; returns a PIL image.
    ``title`` (e.g. the model and data) heads the plot, followed by each mode's best validation accuracy."""
    import matplotlib.ticker

    from .render import figure_to_image, pyplot, wrap

    plt = pyplot()

    fig, axis = plt.subplots(figsize=(5.5, 3.6))
    for index, history in enumerate(histories):
        epochs = range(1, len(history.val_accuracy) + 1)
        colour = f"C{index}"
        axis.plot(epochs, history.val_accuracy, "-o", color=colour, label=f"{history.mode} (val)")
        axis.plot(epochs, history.train_accuracy, "--", color=colour, alpha=0.6, label=f"{history.mode} (train)")
    axis.set_xlabel("epoch")
    axis.set_ylabel("top-1 accuracy (fraction)")
    axis.set_ylim(0, 1.02)
    best = ", ".join(f"{h.mode} {h.best_val_accuracy:.2f}" for h in histories)
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # whole epochs
    axis.set_title(wrap(f"{title}: best validation accuracy {best}", 5.0, 9), fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return figure_to_image(fig, path)
