"""The mining itself: one streaming pass over the data, every layer captured in the same
forward pass (:func:`top_k_examples`, resumable), a range of it (:func:`mine_range`, what each
engine runs), and the reverse view for one image (:func:`top_units`)."""

from __future__ import annotations

__all__ = ["empty_result", "mine_range", "top_k_examples", "top_units"]

import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ...checks import check_images, model_device
from ...errors import ConvscopeError
from ...hooks import capture, frozen
from ...layers import check_layers, layer_table, receptive_field
from ..registry import get_engine
from .resume import data_fingerprint, resume, save_checkpoint
from .sources import ImageSource
from .types import WHOLE_IMAGE, LayerExamples, TopExamples, UnitActivation


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
        field = field if field is not None else WHOLE_IMAGE
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
        engine: ``"local"`` (this process) or ``"ray"`` (shards mined in parallel on Ray actors,
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
    fingerprint = data_fingerprint(names, k, size, source.sources, total, source.preprocess)
    result = resume(checkpoint, fingerprint) if checkpoint else None
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
            save=(lambda: save_checkpoint(result, checkpoint, fingerprint)) if checkpoint else None,
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
            save_checkpoint(result, checkpoint, fingerprint)
    return result


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
    field = receptive_field(model, name, tuple(image.shape[-2:])) if seen[name].ndim == 4 else WHOLE_IMAGE
    values, channels = strongest.topk(min(k, strongest.numel()))
    units = []
    for value, channel in zip(values.tolist(), channels.tolist()):
        y, x = divmod(int(where[channel]), width)
        units.append(UnitActivation(channel, value, (y, x), field.box(y, x, tuple(image.shape[-2:]))))
    return units
