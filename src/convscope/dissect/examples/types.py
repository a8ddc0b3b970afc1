"""The records of a mining pass (:func:`~convscope.dissect.examples.mining.top_k_examples`):
per layer, the running top-k lists and per-channel sums (:class:`LayerExamples`); the whole
result (:class:`TopExamples`); one unit of the reverse view (:class:`UnitActivation`)."""

from __future__ import annotations

__all__ = ["LayerExamples", "TopExamples", "UnitActivation", "WHOLE_IMAGE"]

from dataclasses import dataclass, field
from typing import Callable

import torch

from ...errors import ConvscopeError
from ...layers import ReceptiveField

#: the receptive field of a layer with a (N, C) output: the whole image.
WHOLE_IMAGE = ReceptiveField(None, (0.0, 0.0), (0.0, 0.0))


@dataclass
class LayerExamples:
    """The top-k record of one layer, for every channel.

    Attributes:
        values: (C, k) strongest activation of each example, descending; ``-inf`` where a
            slot is still empty (fewer than k images seen).
        indices: (C, k) index of each example's image in the data (-1 when empty).
        positions: (C, k, 2) (y, x) of the maximum in the layer's feature map.
        field: receptive field of the layer's units in the input image.
        map_size: (h, w) of the layer's feature map.
        max_sum, mean_sum, active: per-channel sums over images of the spatial maximum, of
            the spatial mean, and the count of images whose maximum is > 0 (for statistics).
    """

    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    field: ReceptiveField
    map_size: tuple[int, int]
    max_sum: torch.Tensor
    mean_sum: torch.Tensor
    active: torch.Tensor

    @classmethod
    def empty(cls, channels: int, k: int, field: ReceptiveField, map_size: tuple[int, int]) -> LayerExamples:
        return cls(
            torch.full((channels, k), float("-inf")),
            torch.full((channels, k), -1, dtype=torch.long),
            torch.zeros(channels, k, 2, dtype=torch.long),
            field,
            map_size,
            torch.zeros(channels, dtype=torch.float64),
            torch.zeros(channels, dtype=torch.float64),
            torch.zeros(channels, dtype=torch.long),
        )

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    def update(self, activations: torch.Tensor, first_index: int | torch.Tensor) -> None:
        """Fold a batch of activations (N, C, h, w) or (N, C) of images ``first_index...`` (or of
        the image indices ``first_index``, a LongTensor[N], when some were skipped) in."""
        acts = activations.detach().float()
        acts = acts.flatten(2) if acts.ndim > 2 else acts[..., None]
        strongest, where = acts.max(dim=-1)  # (N, C)
        width = self.map_size[1]
        positions = torch.stack([where // width, where % width], dim=-1).transpose(0, 1).cpu()  # (C, N, 2)
        strongest = strongest.cpu()
        self.max_sum += strongest.double().sum(0)
        self.mean_sum += acts.mean(-1).double().sum(0).cpu()
        self.active += (strongest > 0).sum(0)
        ids = (
            first_index.long().cpu()
            if isinstance(first_index, torch.Tensor)
            else torch.arange(first_index, first_index + strongest.shape[0])
        ).expand(self.channels, -1)
        self.merge(strongest.T, ids, positions)

    def merge(self, values: torch.Tensor, indices: torch.Tensor, positions: torch.Tensor) -> None:
        """Merge candidate lists (C, m) into the top-k: by value descending, then index ascending."""
        values = torch.cat([self.values, values.float()], 1)
        indices = torch.cat([self.indices, indices.long()], 1)
        positions = torch.cat([self.positions, positions.long()], 1)
        indices = torch.where(torch.isinf(values), torch.full_like(indices, torch.iinfo(torch.long).max), indices)
        order = torch.sort(indices, dim=1, stable=True).indices
        values, indices = values.gather(1, order), indices.gather(1, order)
        positions = positions.gather(1, order[..., None].expand(-1, -1, 2))
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.values.shape[1]]
        self.values, self.indices = values.gather(1, order), indices.gather(1, order)
        self.positions = positions.gather(1, order[..., None].expand(-1, -1, 2))
        self.indices = torch.where(torch.isinf(self.values), torch.full_like(self.indices, -1), self.indices)

    def combine(self, other: LayerExamples) -> None:
        """Merge another shard's record of the same layer in (exact: same lists as one pass)."""
        self.merge(other.values, other.indices, other.positions)
        self.max_sum += other.max_sum
        self.mean_sum += other.mean_sum
        self.active += other.active

    def box(self, channel: int, rank: int, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of example ``rank``'s receptive field, clipped to the image."""
        y, x = self.positions[channel, rank].tolist()
        return self.field.box(y, x, image_size)


@dataclass
class TopExamples:
    """Result of :func:`top_k_examples`: per layer records, and where the images came from.

    Attributes:
        layers: layer name -> :class:`LayerExamples`.
        k: examples kept per channel.
        size: side the images were resized to before the forward pass.
        seen: how many images have been processed (the pass resumes from here).
        total: how many images the data holds (``None`` for an iterator).
        complete: ``False`` when the pass was interrupted.
        sources: file names / specs of the images, when the data has them.
        spec: the dataset spec the images were read from (``None`` for other data).
        preprocess: how they were fitted to ``size`` (``resize`` | ``crop``).
    """

    layers: dict[str, LayerExamples]
    k: int
    size: int
    seen: int = 0
    total: int | None = None
    complete: bool = True
    sources: list[str] | None = None
    spec: str | None = None
    preprocess: str = "resize"
    _images: Callable[[int], torch.Tensor] | None = field(default=None, repr=False)
    skipped: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def __getitem__(self, layer: str) -> LayerExamples:
        if layer not in self.layers:
            raise ConvscopeError(f"layer {layer!r} was not mined; mined: {', '.join(self.layers)}")
        return self.layers[layer]

    def image(self, index: int) -> torch.Tensor:
        """Image ``index`` of the data as mined: (3, size, size) in [0, 1]."""
        if self._images is None:
            raise ConvscopeError("this result does not know its images; pass data= to the rendering function")
        return self._images(index)

    def patches(self, layer: str, channel: int) -> list[tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]]:
        """The examples of one channel, best first: (receptive-field patch, whole image, box)."""
        record = self[layer]
        found = []
        for rank in range(record.values.shape[1]):
            index = int(record.indices[channel, rank])
            if index < 0:
                break
            image = self.image(index)
            top, left, bottom, right = record.box(channel, rank, tuple(image.shape[-2:]))
            found.append((image[:, top:bottom, left:right], image, (top, left, bottom, right)))
        return found

    def statistics(self, layer: str) -> dict[str, torch.Tensor]:
        """Per-channel summary over the images seen: mean of the spatial max, mean activation,
        fraction of images where the channel fires (max > 0), and the top-1 value."""
        record, count = self[layer], max(self.seen - len(self.skipped), 1)
        return {
            "mean_max": (record.max_sum / count).float(),
            "mean": (record.mean_sum / count).float(),
            "firing_rate": record.active.float() / count,
            "top": record.values[:, 0],
        }

    def state(self) -> dict:
        """A plain snapshot (tensors, numbers, strings, receptive fields): see :func:`state_bytes`."""
        return {
            "k": self.k,
            "size": self.size,
            "seen": self.seen,
            "total": self.total,
            "complete": self.complete,
            "sources": self.sources,
            "spec": self.spec,
            "preprocess": self.preprocess,
            "layers": {name: vars(record).copy() for name, record in self.layers.items()},
        }

    @classmethod
    def from_state(cls, state: dict) -> TopExamples:
        layers = {
            name: LayerExamples(
                **{key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in fields.items()}
            )
            for name, fields in state["layers"].items()
        }
        return cls(
            layers,
            state["k"],
            state["size"],
            state["seen"],
            state["total"],
            state["complete"],
            state["sources"],
            state.get("spec"),
            state.get("preprocess", "resize"),
        )


@dataclass
class UnitActivation:
    """One unit of :func:`top_units`: channel, its strongest value and where (y, x), and the
    receptive-field box (top, left, bottom, right) of that position."""

    channel: int
    value: float
    position: tuple[int, int]
    box: tuple[int, int, int, int]
