"""Dataset examples: the images (and receptive-field patches) that excite a unit most.

Zeiler & Fergus (2014, "Visualizing and understanding convolutional networks") show, for
each feature map, the top-9 images of a dataset by the map's strongest activation, each
with the image patch under that activation's receptive field. Here one streaming pass over
a folder (or a list of images, a tensor or a ``torch`` dataset) records, for every channel
of one or more layers at once, the top-k images by the channel's spatial maximum and the
position (y, x) of that maximum. Memory is O(k x channels): only the running top-k lists
(values, image indices, positions) and a few per-channel sums are kept.

Conventions: an image appears at most once per channel (its strongest position), as in
Zeiler & Fergus; ties are broken by the lower image index, so the result does not depend
on batching or sharding (the Ray engine merges shards to exactly the same lists). Patches
are the receptive-field box from :func:`convscope.layers.receptive_field`, clipped to the
image. Layers with a (N, C) output (pooling, linear) count as 1 x 1 maps whose field is the
whole image.
"""

from __future__ import annotations

__all__ = [
    "channel_sheet",
    "draw_box",
    "empty_result",
    "example_strip",
    "ImageSource",
    "LayerExamples",
    "load_examples",
    "mine_range",
    "state_bytes",
    "state_from_bytes",
    "top_k_examples",
    "top_units",
    "TopExamples",
    "UnitActivation",
]

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image, ImageDraw
from torch import nn

from ..checks import check_images, model_device
from ..errors import ConvscopeError
from ..hooks import capture, frozen
from ..images import load_image, to_uint8
from ..layers import ReceptiveField, check_layers, layer_table, receptive_field
from .registry import get_engine

_WHOLE_IMAGE = ReceptiveField(None, (0.0, 0.0), (0.0, 0.0))


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
        from ..data.specs import ImageDataset, Take, WrappedDataset, open_dataset

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
            return load_image(self.sources[index], self.size)[0]
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
        from ..data import SkipLog, stream

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


def empty_result(model: nn.Module, layers: Sequence[str], k: int, size: int, device) -> TopExamples:
    """An empty record for ``layers`` (shapes and receptive fields from one probe pass)."""
    records = {}
    probe = torch.zeros(1, 3, size, size, device=device)
    with frozen(model), torch.no_grad(), capture(model, layers, detach=True) as seen:
        model(probe)
    fields = {row.name: row.receptive_field for row in layer_table(model, size)}
    for name in layers:
        if name not in seen.activations:
            raise ConvscopeError(f"layer {name!r} did not run in the forward pass")
        act = seen[name]
        channels, map_size = act.shape[1], (tuple(act.shape[-2:]) if act.ndim == 4 else (1, 1))
        field = fields.get(name) if act.ndim == 4 else None
        field = field if field is not None else _WHOLE_IMAGE
        records[name] = LayerExamples.empty(channels, k, field, map_size)
    return TopExamples(records, k, size)


def mine_range(
    model: nn.Module,
    source: ImageSource,
    result: TopExamples,
    start: int,
    stop: int,
    batch_size: int,
    device,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Fold images ``start..stop`` of ``source`` into ``result`` (one forward pass per batch,
    all layers captured at once); ``result.seen`` counts the images done."""
    names = list(result.layers)
    with frozen(model), torch.inference_mode(), capture(model, names, detach=True) as seen:
        for indices, images, attempted in source.batches(start, batch_size, stop):
            if images is not None:
                model(images.to(device))
                for name in names:
                    result.layers[name].update(seen[name], indices)
            result.seen += attempted  # a position: the pass resumes after the skipped images too
            if on_batch is not None:
                on_batch(attempted)


def _fingerprint(
    layers: Sequence[str], k: int, size: int, sources: list[str] | None, total: int, preprocess: str
) -> str:
    text = repr((list(layers), k, size, sources, total) + (() if preprocess == "resize" else (preprocess,)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def top_k_examples(
    model: nn.Module,
    data,
    layers: str | Sequence[str],
    k: int = 9,
    size: int | None = None,
    batch_size: int = 16,
    checkpoint: str | Path | None = None,
    save_every: int = 20,
    engine: str = "local",
    address: str | None = None,
    shards: int | None = None,
    progress: bool = True,
    strict: bool = False,
    preprocess: str = "resize",
    workers: int | None = None,
    label_file: str | Path | None = None,
) -> TopExamples:
    """One streaming pass: for each channel of each layer, the top-k images and where they peak.

    Zeiler & Fergus (2014): rank images by a feature map's strongest activation; the
    receptive field of that position is the patch the unit responds to.

    Args:
        model: any image CNN (an :class:`~convscope.models.ImageClassifier` or ``nn.Module``).
        data: a dataset spec or folder (:func:`convscope.data.open_dataset`: class folders,
            ImageNet-C trees, ``samples:imagenet``, ``cifar10:ROOT``, ...) or a ``Dataset`` it
            returned, a list of image paths / ``sample:NAME`` specs, a tensor (N, 3, H, W) in
            [0, 1], or a ``torch`` dataset of image tensors (or tuples starting with one).
        layers: one dotted layer name or several (all recorded in the same forward pass).
        k: examples kept per channel.
        size: side images are resized to (default: the model's ``input_size`` or 224).
        batch_size: images per forward pass.
        checkpoint: file where partial results are saved every ``save_every`` batches and on
            Ctrl-C; a later call with the same arguments resumes from it (data is recognised by
            its file names, or only by its length for tensors and datasets without files).
        engine: ``"local"`` (this process) or ``"ray"`` (shards mined in parallel on Ray Data,
            top-k lists merged exactly; see :mod:`convscope.dissect.engines`).
        address: Ray cluster address (``None`` starts a local Ray).
        shards: number of Ray shards (default: the cluster's CPU count).
        progress: show a progress bar.
        strict: stop at the first unreadable image (default: skip it, name it in ``skipped``).
        preprocess: how a dataset spec's images reach ``size`` (``resize`` | ``crop``, see
            :class:`convscope.data.Preprocess`).
        workers: the data layer's loader processes (default :func:`convscope.data.default_workers`).
        label_file: labels of a flat folder spec (not needed for mining; accepted like every
            dataset-level command).

    Returns:
        :class:`TopExamples`; ``complete`` is ``False`` when interrupted by Ctrl-C.

    >>> found = top_k_examples(model, "photos/", ["blocks.1", "blocks.5"], k=9)
    >>> found["blocks.5"].indices[42]        # the 9 images that excite channel 42 most
    """
    names = check_layers(model, [layers] if isinstance(layers, str) else list(layers))
    if k < 1:
        raise ConvscopeError(f"k must be at least 1, got {k}")
    size = size or getattr(model, "input_size", None) or 224
    size = size if isinstance(size, int) else size[0]
    source = ImageSource(data, size, strict, preprocess, workers, label_file)
    total = len(source)
    if total == 0:
        raise ConvscopeError("no images to mine")
    device = model_device(model)
    fingerprint = _fingerprint(names, k, size, source.sources, total, source.preprocess)
    result = _resume(checkpoint, fingerprint) if checkpoint else None
    if result is None:
        result = empty_result(model, names, k, size, device)
        result.total, result.sources = total, source.sources
        result.spec, result.preprocess = source.spec, source.preprocess
    result._images = source
    result.skipped = source.skipped  # filled as the pass goes (this pass's skipped files)
    if result.seen >= total:
        result.complete = True
        return result
    run = get_engine(engine)
    result.complete = False
    try:
        run(
            model,
            source,
            result,
            batch_size=batch_size,
            device=device,
            progress=progress,
            address=address,
            shards=shards,
            save=(lambda: _save(result, checkpoint, fingerprint)) if checkpoint else None,
            save_every=save_every,
        )
        result.complete = True
    except KeyboardInterrupt:
        warnings.warn(
            f"interrupted after {result.seen} of {total} images; partial results returned"
            + (f" and saved to {checkpoint} (run again to resume)" if checkpoint else ""),
            stacklevel=2,
        )
    finally:
        if checkpoint:
            _save(result, checkpoint, fingerprint)
    return result


def _save(result: TopExamples, path: str | Path, fingerprint: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(state_bytes(result.state(), fingerprint))
    temporary.replace(path)  # atomic: an interrupt never leaves a half-written checkpoint


_TENSOR_FIELDS = ("values", "indices", "positions", "max_sum", "mean_sum", "active")


def state_bytes(state: dict, fingerprint: str = "") -> bytes:
    """A :meth:`TopExamples.state` as safetensors bytes: the tensors, and the rest as JSON in the
    header's metadata. The format holds data only (no pickle), so reading it runs no code."""
    from safetensors.torch import save

    tensors, layers = {}, []
    for i, (name, fields) in enumerate(state["layers"].items()):
        for key in _TENSOR_FIELDS:
            tensors[f"{i}.{key}"] = fields[key].contiguous()
        field_ = fields["field"]
        layers.append(
            {
                "name": name,
                "map_size": list(fields["map_size"]),
                "field": [None if field_.size is None else list(field_.size), list(field_.jump), list(field_.start)],
            }
        )
    meta = {key: state[key] for key in ("k", "size", "seen", "total", "complete", "sources")}
    meta.update(spec=state.get("spec"), preprocess=state.get("preprocess", "resize"))
    header = {"format": _FORMAT, "fingerprint": fingerprint, "layers": layers, **meta}
    return save(tensors, metadata={"convscope": json.dumps(header)})


_FORMAT = "convscope-examples-1"


def state_from_bytes(data: bytes, where: str = "the examples file") -> tuple[dict, str]:
    """Inverse of :func:`state_bytes`: ``(state, fingerprint)``; anything else is refused with a
    :class:`ConvscopeError` (pickled checkpoints of older versions included: they could run code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    refuse = (
        f"{where} is not a convscope examples file (safetensors written by top_k_examples); "
        "pickled checkpoints are refused because loading them could run code"
    )
    try:
        tensors = load(data)
        meta = json.loads(_metadata(data).get("convscope", "null"))
    except (SafetensorError, ValueError, KeyError, TypeError, OSError, UnicodeDecodeError):
        raise ConvscopeError(refuse) from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ConvscopeError(refuse)
    try:
        layers = {}
        for i, layer in enumerate(meta["layers"]):
            size, jump, start = layer["field"]
            fields = {key: tensors[f"{i}.{key}"] for key in _TENSOR_FIELDS}
            fields["field"] = ReceptiveField(
                None if size is None else (float(size[0]), float(size[1])),
                (float(jump[0]), float(jump[1])),
                (float(start[0]), float(start[1])),
            )
            fields["map_size"] = (int(layer["map_size"][0]), int(layer["map_size"][1]))
            layers[str(layer["name"])] = fields
        sources = meta["sources"]
        if sources is not None and not all(isinstance(s, str) for s in sources):
            raise TypeError
        spec, preprocess = meta.get("spec"), meta.get("preprocess", "resize")
        if not (spec is None or isinstance(spec, str)) or preprocess not in ("resize", "crop", "none"):
            raise TypeError
        state = {
            "k": int(meta["k"]),
            "size": int(meta["size"]),
            "seen": int(meta["seen"]),
            "total": None if meta["total"] is None else int(meta["total"]),
            "complete": bool(meta["complete"]),
            "sources": sources,
            "spec": spec,
            "preprocess": preprocess,
            "layers": layers,
        }
    except (KeyError, TypeError, ValueError, IndexError):
        raise ConvscopeError(f"{where} is damaged (its header does not match its tensors)") from None
    return state, str(meta.get("fingerprint", ""))


def _metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors buffer (read from its JSON header, no tensors)."""
    import struct

    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError("truncated")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}


def _read_saved(path: Path) -> tuple[dict, str]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConvscopeError(f"cannot read {path}: {error.strerror or error}") from None
    return state_from_bytes(data, str(path))


def _resume(path: str | Path, fingerprint: str) -> TopExamples | None:
    path = Path(path)
    if not path.is_file():
        return None
    state, saved = _read_saved(path)
    if saved != fingerprint:
        warnings.warn(f"{path} was made for other data, layers or k; starting afresh", stacklevel=3)
        return None
    return TopExamples.from_state(state)


def load_examples(path: str | Path, data=None) -> TopExamples:
    """Read a saved result (a checkpoint of :func:`top_k_examples`); ``data`` re-attaches the
    images when they were not files or a dataset spec. Only the safetensors format is read (it cannot hold code)."""
    path = Path(path)
    if not path.is_file():
        raise ConvscopeError(f"no such examples file: {path}")
    result = TopExamples.from_state(_read_saved(path)[0])
    if data is None and result.spec is not None:  # the same images, opened the same way
        result._images = ImageSource(result.spec, result.size, preprocess=result.preprocess)
    elif data is not None or result.sources:
        result._images = ImageSource(data if data is not None else result.sources, result.size)
    return result


@dataclass
class UnitActivation:
    """One unit of :func:`top_units`: channel, its strongest value and where (y, x), and the
    receptive-field box (top, left, bottom, right) of that position."""

    channel: int
    value: float
    position: tuple[int, int]
    box: tuple[int, int, int, int]


def top_units(model: nn.Module, image: torch.Tensor, layer: str, k: int = 9) -> list[UnitActivation]:
    """The reverse view: for one image (1, 3, H, W), the k channels of ``layer`` that fire most
    (by spatial maximum), each with the position of its maximum and its receptive-field box."""
    image = check_images(image, "image")
    if image.shape[0] != 1:
        raise ConvscopeError(f"top_units takes one image (1, 3, H, W), got {tuple(image.shape)}")
    (name,) = check_layers(model, [layer])
    with frozen(model), torch.no_grad(), capture(model, name, detach=True) as seen:
        model(image)
    acts = seen[name][0].float()
    acts = acts.flatten(1) if acts.ndim == 3 else acts[:, None]
    strongest, where = acts.max(-1)
    width = seen[name].shape[-1] if seen[name].ndim == 4 else 1
    field = receptive_field(model, name, tuple(image.shape[-2:])) if seen[name].ndim == 4 else _WHOLE_IMAGE
    values, channels = strongest.topk(min(k, strongest.numel()))
    units = []
    for value, channel in zip(values.tolist(), channels.tolist()):
        y, x = divmod(int(where[channel]), width)
        units.append(UnitActivation(channel, value, (y, x), field.box(y, x, tuple(image.shape[-2:]))))
    return units


def draw_box(image: torch.Tensor, box: tuple[int, int, int, int], colour=(255, 40, 40), width: int = 2) -> Image.Image:
    """The image (3, H, W) as a PIL image with the box (top, left, bottom, right) drawn."""
    picture = Image.fromarray(to_uint8(image))
    top, left, bottom, right = box
    ImageDraw.Draw(picture).rectangle([left, top, right - 1, bottom - 1], outline=colour, width=width)
    return picture


def _tile(picture: Image.Image, side: int) -> Image.Image:
    scale = side / max(picture.size)
    resized = picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
        Image.Resampling.NEAREST if scale > 2 else Image.Resampling.BILINEAR,
    )
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(resized, ((side - resized.width) // 2, (side - resized.height) // 2))
    return canvas


def example_strip(
    found: Sequence[tuple[torch.Tensor, torch.Tensor, tuple]],
    side: int = 96,
    context: bool = True,
    title: str = "",
    labels: Sequence[str] = (),
) -> Image.Image:
    """One row per example: the receptive-field patch (enlarged) next to the whole image with the
    box drawn (``context=False``: the patches alone, in one row)."""
    if not found:
        return Image.new("RGB", (side, side), (255, 255, 255))
    if not context:
        strip = Image.new("RGB", (len(found) * (side + 2), side), (255, 255, 255))
        for i, (patch, _, _) in enumerate(found):
            strip.paste(_tile(Image.fromarray(to_uint8(patch)), side), (i * (side + 2), 0))
        return strip
    sheet = Image.new("RGB", (2 * side + 6, len(found) * (side + 4)), (255, 255, 255))
    for i, (patch, image, box) in enumerate(found):
        sheet.paste(_tile(Image.fromarray(to_uint8(patch)), side), (0, i * (side + 4)))
        sheet.paste(_tile(draw_box(image, box, width=max(2, image.shape[-1] // 60)), side), (side + 6, i * (side + 4)))
    if title or labels:
        from ..render import annotate

        return annotate(sheet, title, labels, side + 4)
    return sheet


def channel_sheet(
    result: TopExamples, layer: str, channels: Sequence[int], side: int = 64, title: str | None = None
) -> Image.Image:
    """A grid with one row per channel and its k patches (Zeiler & Fergus' figure 2 layout), each
    row labelled with its channel id and top activation, titled with the layer."""
    from ..render import annotate

    channels = list(channels)
    rows = [example_strip(result.patches(layer, c), side, context=False) for c in channels]
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, len(rows) * (side + 4)), (255, 255, 255))
    for i, row in enumerate(rows):
        sheet.paste(row, (0, i * (side + 4)))
    values = result[layer].values
    labels = [f"ch {c}  max {float(values[c, 0]):.3g}" for c in channels]
    heading = (
        title
        if title is not None
        else f"{layer}: top-{values.shape[1]} dataset examples per channel ({result.seen} images)"
    )
    return annotate(sheet, heading, labels, side + 4)
