"""Where a mining pass reads its images: :class:`ImageSource` (dataset specs through the data
layer's loader, files, tensors, ``torch`` datasets), image by image or batch by batch."""

from __future__ import annotations

__all__ = ["ImageSource"]

from pathlib import Path
from typing import Iterator, Sequence

import torch

from ...errors import ConvscopeError
from ...images import load_image


class ImageSource:
    """The data of a mining pass, indexable image by image: a dataset spec or folder (read
    through :func:`convscope.data.open_dataset`: any layout, ``samples:imagenet``,
    ``cifar10:ROOT``, ...), a ``Dataset`` of the data layer, a list of image files (paths,
    ``sample:NAME``), a tensor (N, 3, H, W) or a ``torch`` dataset whose items are an image
    tensor or a tuple starting with one.

    The data layer's datasets are batched by its one streaming loader (``workers`` decoding
    processes, unreadable files skipped and named); ``preprocess`` (``resize`` | ``crop``) is how
    their images reach ``size x size``. ``spec`` is the spec string they were opened from (kept
    with the results, so that :func:`load_examples` can open the same images again).
    """

    def __init__(
        self,
        data,
        size: int,
        strict: bool = False,
        preprocess: str = "resize",
        workers: int | None = None,
        label_file: str | Path | None = None,
    ):
        from ...data.specs import ImageDataset, Take, WrappedDataset, open_dataset

        self.size, self.strict, self.preprocess, self.workers = size, strict, preprocess, workers
        self.skipped: list[tuple[str, str]] = []
        self.sources: list[str] | None = None
        self.spec: str | None = None
        self.streamed = False
        if isinstance(data, (str, Path)):
            self.spec = str(Path(data).resolve()) if Path(data).exists() else str(data)
            data = open_dataset(self.spec, size, preprocess, label_file=label_file)
        if isinstance(data, (ImageDataset, WrappedDataset, Take)):
            self.dataset, self.streamed = data, True
            self.preprocess = getattr(getattr(data, "preprocess", None), "mode", preprocess)
            files, ids = getattr(data, "files", None), getattr(data, "ids", None)
            self.sources = [str(p) for p in files] if files is not None else ([str(i) for i in ids] if ids else None)
        elif isinstance(data, torch.Tensor):
            if data.ndim != 4 or data.shape[1] != 3:
                raise ConvscopeError(f"expected images (N, 3, H, W), got {tuple(data.shape)}")
            self.tensor = data
        elif isinstance(data, torch.utils.data.Dataset):
            self.dataset = data
            files = getattr(data, "files", None)
            self.sources = [str(p) for p in files] if files is not None else None
        elif isinstance(data, Sequence) and data and all(isinstance(s, (str, Path)) for s in data):
            self.sources = [str(s) for s in data]
        else:
            raise ConvscopeError(
                f"cannot mine examples from {type(data).__name__}: pass a dataset spec or folder, image paths, "
                "a tensor (N, 3, H, W) or a torch dataset"
            )
        self.data = data
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        if isinstance(self.data, torch.Tensor):
            return self.data.shape[0]
        return len(self.dataset) if hasattr(self, "dataset") else len(self.sources)

    def __call__(self, index: int) -> torch.Tensor:
        if index not in self._cache:  # pictures reuse the same few top images many times
            if len(self._cache) >= 256:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = self._read(index)
        return self._cache[index]

    def __getstate__(self) -> dict:
        return {**vars(self), "_cache": {}}

    def _read(self, index: int) -> torch.Tensor:
        if isinstance(self.data, torch.Tensor):
            image = self.data[index].detach().float().cpu()
        elif hasattr(self, "dataset"):
            item = self.dataset[index]
            image = item[0] if isinstance(item, (tuple, list)) else item
        else:
            fit = "center-crop" if self.preprocess == "crop" else "squash"  # the data layer's names
            return load_image(self.sources[index], self.size, fit)[0]
        if tuple(image.shape[-2:]) != (self.size, self.size):
            image = torch.nn.functional.interpolate(
                image[None].float(), size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )[0].clamp(0, 1)
        return image

    def batches(
        self, start: int, batch_size: int, stop: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, int]]:
        """``(indices, images, attempted)`` per batch; unreadable images are left out and recorded in
        :attr:`skipped` (``strict`` raises at the first one instead)."""
        stop = len(self) if stop is None else stop
        if self.streamed:
            yield from self._streamed(start, batch_size, stop)
            return
        for first in range(start, stop, batch_size):
            indices, images = [], []
            for i in range(first, min(first + batch_size, stop)):
                try:
                    images.append(self._read(i))
                except ConvscopeError as error:
                    name = self.sources[i] if self.sources else str(i)
                    if self.strict:
                        raise ConvscopeError(f"{error} (--strict stops at the first unreadable file)") from None
                    self.skipped.append((name, str(error)))
                    continue
                indices.append(i)
            attempted = min(first + batch_size, stop) - first
            yield torch.tensor(indices, dtype=torch.long), (torch.stack(images) if images else None), attempted

    def _streamed(self, start: int, batch_size: int, stop: int):
        """:meth:`batches` through the data layer's loader: ``attempted`` counts the positions a
        batch moves the pass on by (its skipped items included), so ``seen`` stays a position."""
        from ...data import SkipLog, stream

        skips, position = SkipLog(), start
        for batch in stream(
            self.dataset, batch_size, self.workers, strict=self.strict, skips=skips, indices=range(start, stop)
        ):
            self.skipped.extend(skips.items)
            skips.items.clear()
            end = int(batch.indices.max()) + 1
            yield batch.indices, batch.images, end - position
            position = end
        self.skipped.extend(skips.items)
        if position < stop:  # the last batches held only unreadable files
            yield torch.zeros(0, dtype=torch.long), None, stop - position
