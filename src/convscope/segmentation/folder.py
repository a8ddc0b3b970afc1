"""Image/mask pairs streamed from a folder: a ``torch`` Dataset and its batches, memory O(batch).

:class:`MaskFolder` reads one pair per item, so a folder of any size trains and scores with
the memory of one batch (``segment train`` / ``segment eval`` on a folder). Two layouts:

* VOC: ``JPEGImages/NAME.jpg`` (any image type) + ``SegmentationClass/NAME.png`` (palette PNG
  of class ids or RGB in the VOC colour map, 255 = ignore), optional
  ``ImageSets/Segmentation/SPLIT.txt`` and ``classes.txt`` (default: the 21 VOC names);
  a torchvision root holding ``VOCdevkit/VOC2012`` works too.
* plain: ``images/NAME.*`` + ``masks/NAME.png`` (same mask encoding), optional ``classes.txt``.

Images are decoded by :func:`convscope.images.read_image_file` and fitted to ``size`` x ``size``
by the shared preprocessing vocabulary (:func:`convscope.images.preprocess`: ``squash``, the
default here, resizes the whole picture; ``center-crop`` resizes the shorter side to
``size / 0.875`` and takes the centre); the mask follows the same geometry (the same resize and
crop window, :func:`convscope.images.preprocess_geometry`) with nearest neighbour, so class ids
stay ids and stay on their pixels. A loader built for several passes (epochs) keeps its worker
processes alive between them (:meth:`FolderPart.loader`). An unreadable image or mask is skipped,
named and counted (:class:`convscope.data.SkipLog`), as in the classification layer; a mask
whose size differs from its image's is a broken dataset, not a bad file, and stops the run
with one line naming the pair.
"""

from __future__ import annotations

__all__ = ["FolderPart", "MaskFolder", "open_mask_folder", "pair_loader", "PairBatch", "read_pairs"]

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConvscopeError
from ..images import PREPROCESSING, preprocess, preprocess_geometry, read_image_file
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
    """Pairs of a VOC-style or ``images/`` + ``masks/`` folder; item = (image (3, S, S), mask (S, S), id).
    ``preprocessing``: ``squash`` or ``center-crop`` (see the module notes), the same for image and mask."""

    def __init__(self, root: str | Path, size: int, split: str | None = None, preprocessing: str = "squash"):
        if size < 1:
            raise ConvscopeError(f"size must be at least 1, got {size}")
        if preprocessing not in PREPROCESSING:
            raise ConvscopeError(f"unknown preprocessing {preprocessing!r}; choose {' | '.join(PREPROCESSING)}")
        self.root, pairs, self.classes = list_pairs(root, split)
        self.size, self.preprocessing = size, preprocessing
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
        inner, (top, left) = preprocess_geometry(tuple(image.shape[-2:]), self.size, self.preprocessing)
        image = preprocess(image[None], self.size, self.preprocessing)[0]
        mask = F.interpolate(mask[None, None].float(), size=inner, mode="nearest")[0, 0].long()
        return image, mask[top : top + self.size, left : left + self.size].contiguous(), name


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

    def loader(
        self, batch_size: int, device=None, generator: torch.Generator | None = None, passes: int = 1
    ) -> torch.utils.data.DataLoader:
        """A ``DataLoader`` of these pairs (shuffled with ``generator`` when given, anew on every
        pass) for :meth:`batches`; with ``passes`` > 1 its workers stay alive between passes
        (``persistent_workers``) until the loader is dropped."""
        return pair_loader(self.dataset, self.indices, batch_size, device, self.workers, generator, passes)

    def batches(
        self,
        batch_size: int,
        device=None,
        generator: torch.Generator | None = None,
        loader: torch.utils.data.DataLoader | None = None,
    ) -> Iterator[PairBatch]:
        """One pass over these pairs: through ``loader`` (from :meth:`loader`) or a new one."""
        loader = loader if loader is not None else self.loader(batch_size, device, generator)
        return read_pairs(loader, self.skips, self.strict)


def _skip_log() -> SkipLog:
    from ..data import SkipLog

    return SkipLog()


def open_mask_folder(
    root: str | Path,
    size: int,
    split: str | None = None,
    workers: int | None = None,
    strict: bool = False,
    preprocessing: str = "squash",
) -> FolderPart:
    """All pairs of the folder ``root`` at ``size`` x ``size`` (see the module doc), ready to stream."""
    dataset = MaskFolder(root, size, split, preprocessing)
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


def pair_loader(
    dataset: MaskFolder,
    indices: Sequence[int],
    batch_size: int,
    device=None,
    workers: int | None = None,
    generator: torch.Generator | None = None,
    passes: int = 1,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` of the pairs ``indices`` with the dataset layer's settings
    (:func:`convscope.data.loader_options`: pinned memory for CUDA, workers kept for ``passes`` > 1)."""
    from ..data import default_workers, loader_options

    if batch_size < 1:
        raise ConvscopeError(f"batch size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    safe = _SafePairs(dataset, indices)
    workers = min(workers, -(-len(safe) // batch_size))
    sampler = torch.utils.data.RandomSampler(safe, generator=generator) if generator is not None else None
    return torch.utils.data.DataLoader(
        safe, batch_size=batch_size, sampler=sampler, collate_fn=_collate, **loader_options(device, workers, passes)
    )


def read_pairs(loader: torch.utils.data.DataLoader, skips, strict: bool = False) -> Iterator[PairBatch]:
    """One pass of a :func:`pair_loader`: its batches; unreadable pairs go to ``skips`` (a
    :class:`convscope.data.SkipLog`, each name once over all passes); ``strict`` raises at the
    first one. A mask/image size mismatch always raises."""
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
