"""Training and scoring segmentation networks: pixel-wise cross-entropy (and Dice), mIoU, pixel accuracy.

Scores follow the PASCAL VOC / torchmetrics convention: accumulate one confusion matrix
over the whole set (not per image), ignore pixels labelled 255, IoU_c = TP / (TP + FP + FN)
per class, mIoU = mean over classes that occur in the ground truth or the prediction
(classes with an empty union are NaN and left out), pixel accuracy = correct / labelled.

The Dice loss is the soft multi-class Dice of Milletari et al. (2016) on softmax
probabilities, 1 - mean_c (2 sum p t + 1) / (sum p + sum t + 1) over the batch.
"""

from __future__ import annotations

__all__ = [
    "confusion_matrix",
    "dice_loss",
    "evaluate_segmenter",
    "LOSSES",
    "predict_masks",
    "segmentation_loss",
    "SegmentationScores",
    "train_segmenter",
    "TrainingHistory",
]

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images
from ..errors import ConvscopeError
from .data import IGNORE_INDEX, SegmentationData
from .folder import FolderPart

LOSSES = ("ce", "dice", "ce+dice")


def confusion_matrix(
    predicted: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts, rows = true class, columns = predicted class."""
    if predicted.shape != target.shape:
        raise ConvscopeError(f"prediction {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    keep = target != ignore_index
    codes = target[keep].long() * num_classes + predicted[keep].long()
    return torch.bincount(codes.cpu(), minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass
class SegmentationScores:
    """Scores of a confusion matrix.

    Attributes:
        pixel_accuracy: correctly classified labelled pixels / labelled pixels.
        mean_iou: mean IoU over classes present in truth or prediction.
        class_iou: (K,) IoU per class (NaN where the class is absent from both).
        confusion: (K, K) counts, rows = truth.
    """

    pixel_accuracy: float
    mean_iou: float
    class_iou: torch.Tensor
    confusion: torch.Tensor

    @classmethod
    def from_confusion(cls, confusion: torch.Tensor) -> SegmentationScores:
        confusion = confusion.double()
        true_positive = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - true_positive
        class_iou = torch.where(
            union > 0, true_positive / union.clamp(min=1), torch.tensor(float("nan"), dtype=torch.float64)
        )
        total = confusion.sum()
        return cls(
            float(true_positive.sum() / total) if total > 0 else float("nan"),
            float(class_iou.nanmean()),
            class_iou.float(),
            confusion.long(),
        )


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0
) -> torch.Tensor:
    """Soft multi-class Dice loss (Milletari et al. 2016) of (N, K, H, W) logits against (N, H, W) ids."""
    keep = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    probability = F.softmax(logits, dim=1) * keep
    one_hot = (
        F.one_hot(target.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype) * keep
    )
    dims = (0, 2, 3)
    overlap = (probability * one_hot).sum(dims)
    dice = (2 * overlap + smooth) / (probability.sum(dims) + one_hot.sum(dims) + smooth)
    return 1 - dice.mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Pixel-wise cross-entropy (ignoring 255), Dice, or their sum."""
    if loss not in LOSSES:
        raise ConvscopeError(f"unknown loss {loss!r}: choose {', '.join(LOSSES)}")
    total = logits.new_zeros(())
    if "ce" in loss.split("+"):
        total = total + F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    if "dice" in loss.split("+"):
        total = total + dice_loss(logits, target)
    return total


def _device(net: nn.Module) -> torch.device:
    parameter = next(net.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def predict_masks(net: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """(N, H, W) class ids: the argmax of the net's pixel scores, in eval mode (restored after)."""
    images = check_images(images, "images", channels=None)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return torch.cat(
                [
                    net(images[i : i + batch_size].to(_device(net))).argmax(1).cpu()
                    for i in range(0, images.shape[0], batch_size)
                ]
            )
    finally:
        net.train(was_training)


def evaluate_segmenter(
    net: nn.Module, data: SegmentationData | FolderPart, batch_size: int = 16, loader=None
) -> SegmentationScores:
    """mIoU, pixel accuracy and per-class IoU of ``net`` on ``data`` (one confusion matrix over the set).

    A :class:`FolderPart` is streamed batch by batch (memory O(batch)), through ``loader``
    (:meth:`FolderPart.loader`, e.g. one kept over the epochs of a training run) or a new one;
    its unreadable pairs are skipped and recorded in ``data.skips``.
    """
    if isinstance(data, SegmentationData):
        predicted = predict_masks(net, data.images, batch_size)
        return SegmentationScores.from_confusion(confusion_matrix(predicted, data.masks, len(data.classes)))
    total = torch.zeros(len(data.classes), len(data.classes), dtype=torch.long)
    for batch in data.batches(batch_size, _device(net), loader=loader):
        total += confusion_matrix(predict_masks(net, batch.images, batch_size), batch.masks, len(data.classes))
    return SegmentationScores.from_confusion(total)


@dataclass
class TrainingHistory:
    """Per-epoch records of :func:`train_segmenter`: loss, and val mIoU / pixel accuracy when val data is given."""

    loss: list[float] = field(default_factory=list)
    val_miou: list[float] = field(default_factory=list)
    val_pixel_accuracy: list[float] = field(default_factory=list)
    interrupted: bool = False


def _memory_batches(train: SegmentationData, batch_size: int, generator: torch.Generator):
    order = torch.randperm(len(train), generator=generator)
    for start in range(0, len(train), batch_size):
        batch = order[start : start + batch_size]
        yield train.images[batch], train.masks[batch]


def train_segmenter(
    net: nn.Module,
    train: SegmentationData | FolderPart,
    val: SegmentationData | FolderPart | None = None,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 16,
    loss: str = "ce",
    flip: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> TrainingHistory:
    """Train ``net`` (in place) with Adam on pixel-wise ``loss``; Ctrl-C stops cleanly after the current batch.

    Args:
        net: maps (N, 3, H, W) in [0, 1] to (N, K, H, W) scores (:class:`FCN`, :class:`UNet`, or yours).
        train, val: :class:`SegmentationData` (in memory) or :class:`FolderPart` (streamed from a
            folder through a ``DataLoader``, reshuffled every epoch); val is scored after every epoch.
        flip: random horizontal flips (image and mask together).
        progress: show a rich progress bar.

    Returns:
        The :class:`TrainingHistory`; ``net`` keeps its ``training`` flag of before.
    """
    from ..progress import progress_bar

    segmentation_loss(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long), loss)  # validates the name
    device = _device(net)
    parameters = [p for p in net.parameters() if p.requires_grad]
    if not parameters:
        raise ConvscopeError("the network has no trainable parameters")
    optimizer = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = TrainingHistory()
    was_training = net.training
    steps = epochs * -(-len(train) // batch_size)
    # folders: one loader per side for the whole run, its workers kept alive between epochs
    train_loader = train.loader(batch_size, device, generator, epochs) if isinstance(train, FolderPart) else None
    val_loader = val.loader(batch_size, device, passes=epochs) if isinstance(val, FolderPart) else None
    try:
        with progress_bar(steps, "training", progress, interrupted=None) as advance:
            for _ in range(epochs):
                net.train()
                total, count = 0.0, 0
                batches = (
                    _memory_batches(train, batch_size, generator)
                    if isinstance(train, SegmentationData)
                    else ((b.images, b.masks) for b in train.batches(batch_size, loader=train_loader))
                )
                for images, masks in batches:
                    if flip:
                        flipped = torch.rand(len(images), generator=generator) < 0.5
                        images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
                        masks = torch.where(flipped[:, None, None], masks.flip(-1), masks)
                    value = segmentation_loss(net(images.to(device)), masks.to(device), loss)
                    optimizer.zero_grad()
                    value.backward()
                    optimizer.step()
                    total, count = total + value.item() * len(images), count + len(images)
                    advance(1, f"loss {value.item():.3f}")
                if count == 0:
                    raise ConvscopeError("no readable training pairs")
                history.loss.append(total / count)
                if val is not None:
                    scores = evaluate_segmenter(net, val, batch_size, val_loader)
                    history.val_miou.append(scores.mean_iou)
                    history.val_pixel_accuracy.append(scores.pixel_accuracy)
    except KeyboardInterrupt:
        history.interrupted = True
    finally:
        net.train(was_training)
    return history
