"""Image/mask pairs streamed from a folder: a ``torch`` Dataset and its batches, memory O(batch).

:class:`MaskFolder` reads one pair per item, so a folder of any size trains and scores with
the memory of one batch (``segment train`` / ``segment eval`` on a folder). Two layouts:

* VOC: ``JPEGImages/NAME.jpg`` (any image type) + ``SegmentationClass/NAME.png`` (palette PNG
  of class ids or RGB in the VOC colour map, 255 = ignore), optional
  ``ImageSets/Segmentation/SPLIT.txt`` and ``classes.txt`` (default: the 21 VOC names);
  a torchvision root holding ``VOCdevkit/VOC2012`` works too.
* plain: ``images/NAME.*`` + ``masks/NAME.png`` (same mask encoding), optional ``classes.txt``.

Images are decoded by :func:`convscope.images.read_image_file` and resized with antialiasing,
masks with nearest neighbour (class ids stay ids). An unreadable image or mask is skipped,
named and counted (:class:`convscope.data.SkipLog`), as in the classification layer; a mask
whose size differs from its image's is a broken dataset, not a bad file, and stops the run
with one line naming the pair.
"""

from __future__ import annotations

__all__ = ["folder_batches", "FolderPart", "MaskFolder", "open_mask_folder", "PairBatch"]

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConvscopeError
from ..images import read_image_file, resize
from .data import IGNORE_INDEX, _read_mask, list_pairs

if TYPE_CHECKING:
    from ..data import SkipLog


@dataclass
class PairBatch:
    """Images (N, 3, S, S) in [0, 1], masks (N, S, S) int64 (255 = ignore), ids."""

    images: torch.Tensor
    masks: torch.Tensor
    ids: list[str]


class _MaskSizeError(ConvscopeError):
    """A mask of another size than its image: the run stops (not a skipped file)."""


class MaskFolder(torch.utils.data.Dataset):
    """Pairs of a VOC-style or ``images/`` + ``masks/`` folder; item = (image (3, S, S), mask (S, S), id)."""

    def __init__(self, root: str | Path, size: int, split: str | None = None):
        if size < 1:
            raise ConvscopeError(f"size must be at least 1, got {size}")
        self.root, pairs, self.classes = list_pairs(root, split)
        self.size = size
        self.ids = [name for name, _, _ in pairs]
        self.pairs = [(image, mask) for _, image, mask in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image_path, mask_path = self.pairs[index]
        name = self.ids[index]
        try:
            mask = torch.from_numpy(_read_mask(mask_path))
        except (OSError, ValueError, SyntaxError) as error:
            raise ConvscopeError(f"{mask_path.name}: unreadable mask ({type(error).__name__})") from None
        image = read_image_file(image_path)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise _MaskSizeError(
                f"{name}: mask {tuple(mask.shape)} and image {tuple(image.shape[-2:])} differ in size "
                f"({mask_path} vs {image_path.name})"
            )
        valid = mask[mask != IGNORE_INDEX]
        if valid.numel() and int(valid.max()) >= len(self.classes):
            raise _MaskSizeError(
                f"{mask_path}: class {int(valid.max())} but only {len(self.classes)} classes are named (classes.txt)"
            )
        image = resize(image[None], self.size)[0]
        mask = F.interpolate(mask[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0].long()
        return image, mask, name


@dataclass
class FolderPart:
    """Some pairs of a :class:`MaskFolder` (all, or one side of a split) and how to read them:
    what :func:`convscope.segmentation.train_segmenter` and ``evaluate_segmenter`` stream from.
    ``skips`` collects the unreadable pairs (shared by the parts of one split)."""

    dataset: MaskFolder
    indices: list[int]
    skips: SkipLog = field(default_factory=lambda: _skip_log())
    workers: int | None = None
    strict: bool = False

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes

    def __len__(self) -> int:
        return len(self.indices)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[FolderPart, FolderPart]:
        """A random (train, val) split of the pairs (the same rule as ``SegmentationData.split``)."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = len(self) - max(1, round(val_fraction * len(self)))
        if cut < 1:
            raise ConvscopeError(f"{self.dataset.root}: {len(self)} pair(s) is too few to hold some out")
        return (
            FolderPart(self.dataset, [self.indices[i] for i in order[:cut]], self.skips, self.workers, self.strict),
            FolderPart(self.dataset, [self.indices[i] for i in order[cut:]], self.skips, self.workers, self.strict),
        )

    def batches(self, batch_size: int, device=None, generator: torch.Generator | None = None) -> Iterator[PairBatch]:
        """:func:`folder_batches` of these pairs."""
        return folder_batches(
            self.dataset, self.indices, batch_size, self.skips, device, self.workers, self.strict, generator
        )


def _skip_log() -> SkipLog:
    from ..data import SkipLog

    return SkipLog()


def open_mask_folder(
    root: str | Path, size: int, split: str | None = None, workers: int | None = None, strict: bool = False
) -> FolderPart:
    """All pairs of the folder ``root`` at ``size`` x ``size`` (see the module doc), ready to stream."""
    dataset = MaskFolder(root, size, split)
    return FolderPart(dataset, list(range(len(dataset))), workers=workers, strict=strict)


class _SafePairs(torch.utils.data.Dataset):
    """A failed read becomes a record (so a loader worker survives it); a size mismatch is marked fatal."""

    def __init__(self, dataset: MaskFolder, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        try:
            image, mask, name = self.dataset[index]
        except _MaskSizeError as error:
            return None, None, self.dataset.ids[index], str(error), True
        except ConvscopeError as error:
            return None, None, self.dataset.ids[index], str(error), False
        except (OSError, ValueError, SyntaxError, RuntimeError) as error:
            return None, None, self.dataset.ids[index], f"{type(error).__name__}: {error}".splitlines()[0], False
        return image, mask, name, None, False


def _collate(items):
    good = [item for item in items if item[3] is None]
    failed = [(item[2], item[3], item[4]) for item in items if item[3] is not None]
    if not good:
        return None, failed
    batch = PairBatch(
        torch.stack([item[0] for item in good]), torch.stack([item[1] for item in good]), [item[2] for item in good]
    )
    return batch, failed


def folder_batches(
    dataset: MaskFolder,
    indices: Sequence[int],
    batch_size: int,
    skips,
    device=None,
    workers: int | None = None,
    strict: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[PairBatch]:
    """Batches of the pairs ``indices`` (shuffled with ``generator`` when given) through a
    ``DataLoader`` with the dataset layer's settings (:func:`convscope.data.loader_options`).

    Unreadable pairs go to ``skips`` (a :class:`convscope.data.SkipLog`, each name once over all
    passes); ``strict`` raises at the first one. A mask/image size mismatch always raises.
    """
    from ..data import default_workers, loader_options

    if batch_size < 1:
        raise ConvscopeError(f"batch size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    safe = _SafePairs(dataset, indices)
    workers = min(workers, -(-len(safe) // batch_size))
    sampler = torch.utils.data.RandomSampler(safe, generator=generator) if generator is not None else None
    loader = torch.utils.data.DataLoader(
        safe, batch_size=batch_size, sampler=sampler, collate_fn=_collate, **loader_options(device, workers)
    )
    seen = {name for name, _ in skips.items}
    for batch, failed in loader:
        for name, reason, fatal in failed:
            if fatal:
                raise ConvscopeError(reason)
            if strict:
                raise ConvscopeError(f"{name}: {reason} (--strict stops at the first unreadable file)")
            if name not in seen:
                seen.add(name)
                skips.add([(name, reason)])
        if batch is not None:
            yield batch
