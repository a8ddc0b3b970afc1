"""One streaming loader, skipped files, and resumable sharded reductions over a dataset.

:func:`stream` yields :class:`Batch` es from a ``DataLoader`` (worker processes decode and
resize; pinned memory when CUDA is used); a batch is consumed and dropped, so memory is
O(batch). An item that cannot be read is dropped from its batch and its id and reason go to a
:class:`SkipLog` (``strict=True`` raises at the first one instead).

:func:`reduce_dataset` runs a :class:`Reduction` (per-batch update of a state made of tensors,
states merged by addition or a reduction's own ``merge``) shard by shard. With a ``resume``
folder each finished shard's state is written there (safetensors + JSON, never pickle), so
the same call after Ctrl-C or a crash continues with the first unfinished shard and the final
state equals the one of an uninterrupted run. The ``ray`` engine runs the same shards on the Ray
actor pool kept for the process and merges the shard states on the driver in shard order.
"""

from __future__ import annotations

__all__ = [
    "Batch",
    "default_workers",
    "loader_options",
    "loader_replay_problem",
    "NO_LABEL",
    "pins_memory",
    "reduce_dataset",
    "Reduced",
    "Reduction",
    "run_shards",
    "shard_bounds",
    "ShardStore",
    "SkipLog",
    "stream",
]

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ..errors import ConvscopeError

NO_LABEL = -1


@dataclass
class Batch:
    """Images (N, 3, H, W) in [0, 1], labels ``LongTensor[N]`` (``-1`` = unknown), ids, dataset indices."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    indices: torch.Tensor

    @property
    def labelled(self) -> torch.Tensor:
        return self.labels >= 0


@dataclass
class SkipLog:
    """Items that could not be read: ``(id, reason)``, in dataset order."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, entries: Sequence[tuple[str, str]]) -> None:
        self.items.extend((str(a), str(b)) for a, b in entries)

    def __len__(self) -> int:
        return len(self.items)

    def summary(self, show: int = 5) -> str:
        """One line: how many were skipped and the first few names."""
        if not self.items:
            return "no unreadable files"
        names = ", ".join(name for name, _ in self.items[:show])
        more = f" and {len(self.items) - show} more" if len(self.items) > show else ""
        return f"skipped {len(self.items)} unreadable file{'s' if len(self.items) > 1 else ''}: {names}{more}"


class _Safe(torch.utils.data.Dataset):
    """Wraps a dataset so that a failed item becomes a record instead of killing the loader."""

    def __init__(self, dataset, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.indices = list(indices) if indices is not None else None

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def __getitem__(self, position: int):
        index = self.indices[position] if self.indices is not None else position
        try:
            image, label, name = self.dataset[index]
        except ConvscopeError as error:
            return None, None, _item_id(self.dataset, index), str(error), index
        except (OSError, ValueError, SyntaxError, RuntimeError) as error:
            return (
                None,
                None,
                _item_id(self.dataset, index),
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                index,
            )
        return image, label, name, None, index


def _item_id(dataset, index: int) -> str:
    ids = getattr(dataset, "ids", None)
    return ids[index] if ids is not None else str(index)


def _collate(items):
    good = [item for item in items if item[3] is None]
    skipped = [(item[2], item[3], item[4]) for item in items if item[3] is not None]
    if not good:
        return None, skipped
    shapes = {tuple(item[0].shape) for item in good}
    if len(shapes) > 1:
        raise ConvscopeError(
            f"images of different sizes in one batch ({', '.join(map(str, sorted(shapes)[:3]))}); "
            "give a size (--size) or a preprocessing that resizes"
        )
    images = torch.stack([item[0] for item in good])
    labels = torch.tensor([NO_LABEL if item[1] is None else int(item[1]) for item in good], dtype=torch.long)
    return Batch(images, labels, [str(item[2]) for item in good], torch.tensor([item[4] for item in good])), skipped


def default_workers(device=None) -> int:
    """Loader worker processes: ``CONVSCOPE_DATA_WORKERS``, else min(4, CPUs - 1), except for a
    model on the CPU of a machine with at most 2 cores: 0 (items read in the main process).

    There the model's threads already fill the cores and a worker decodes on one of them, so it
    overlaps nothing and adds its start-up and the batch's copy between processes: 12-14 ms of
    worker CPU per 500 x 375 JPEG at 224 px against 6 ms read in-process, and convscope/bare CPU
    0.79-0.92 with one worker against 0.88-0.93 without (2 cores, 2026-12-02,
    ``benchmarks/data.py throughput``)."""
    value = os.environ.get("CONVSCOPE_DATA_WORKERS")
    if value is not None:
        try:
            return max(0, int(value))
        except ValueError:
            raise ConvscopeError(f"CONVSCOPE_DATA_WORKERS must be an integer, got {value!r}") from None
    cpus = os.cpu_count() or 1
    if device is not None and torch.device(device).type == "cpu" and cpus <= 2:
        return 0
    return max(0, min(4, cpus - 1))


def pins_memory(device) -> bool:
    """Whether batches for ``device`` are collated into pinned (page-locked) memory: only when
    they go to a CUDA device and CUDA is there (pinning is for the host-to-GPU copy; on a CPU
    run it only costs). The one place the loaders decide it."""
    return device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()


def loader_options(device, workers: int, passes: int = 1) -> dict:
    """The ``DataLoader`` settings of the dataset layer for batches on ``device``: ``workers``
    processes, pinned memory (:func:`pins_memory`), 4 batches prefetched per worker, and the
    workers kept alive between passes when the loader is iterated ``passes`` > 1 times (epochs)."""
    return {
        "num_workers": workers,
        "pin_memory": pins_memory(device),
        "prefetch_factor": 4 if workers else None,
        "persistent_workers": bool(workers) and passes > 1,
    }


def stream(
    dataset,
    batch_size: int = 32,
    workers: int | None = None,
    device=None,
    strict: bool = False,
    skips: SkipLog | None = None,
    indices: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """Batches of ``dataset`` (optionally only ``indices``, in that order), moved to ``device``.

    Unreadable items are left out of their batch and recorded in ``skips``; ``strict`` raises a
    :class:`ConvscopeError` naming the first one instead.
    """
    if isinstance(dataset, torch.utils.data.DataLoader):
        yield from _from_loader(dataset, device)
        return
    for batch, skipped in _batches(dataset, batch_size, workers, device, strict, indices):
        if skips is not None:
            skips.add([(name, reason) for name, reason, _ in skipped])
        if batch is not None:
            yield batch


def _batches(dataset, batch_size, workers, device, strict, indices):
    """(batch or None when all its items failed, [(id, reason, index), ...]) per loader batch."""
    if batch_size < 1:
        raise ConvscopeError(f"batch size must be at least 1, got {batch_size}")
    safe = _Safe(dataset, indices)
    if len(safe) == 0:
        return
    device = torch.device(device) if device is not None else torch.device("cpu")
    workers = default_workers(device) if workers is None else workers
    workers = min(workers, -(-len(safe) // batch_size))
    loader = torch.utils.data.DataLoader(
        safe,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=_collate,
        **loader_options(device, workers),
    )
    for batch, skipped in loader if workers else _read_at_one_thread(loader):
        if skipped and strict:
            name, reason, _ = skipped[0]
            raise ConvscopeError(f"{name}: {reason} (--strict stops at the first unreadable file)")
        if batch is not None and device.type != "cpu":
            batch.images = batch.images.to(device, non_blocking=True)
        yield batch, skipped


def _read_at_one_thread(loader) -> Iterator:
    """The batches of an in-process loader (no workers), its items read and collated with torch at
    one intra-op thread, the caller's thread count back while it uses each batch.

    Reading an item is a chain of small ops on one image (decode, resize, crop, clamp); at 2 threads
    each of them wakes torch's pool, which costs more than it shares: 29-34 ms of CPU per
    500 x 375 JPEG resized to 224 px against 6-8 ms at one thread (2 cores at load ~14,
    2026-12-02). Loader workers already run at one thread (PyTorch sets it in each worker)."""
    iterator = iter(loader)
    while True:
        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            if threads > 1:
                torch.set_num_threads(threads)
        yield item


def _from_loader(loader, device) -> Iterator[Batch]:
    """A user's DataLoader of ``(images, labels)`` or images: batches as they come."""
    seen = 0
    for item in loader:
        batch = _loader_batch(item, device, None, seen)
        seen += len(batch.ids)
        yield batch


# ------------------------------------------------------------------------------ reductions


class Reduction:
    """A computation reduced over batches: ``start() -> state``, ``update(state, batch, number)``.

    The state is a dict of tensors (and numbers); states of shards merge by addition unless a
    reduction overrides :meth:`merge`. ``number`` is the batch's global number in the dataset
    (shard-independent), for seeds that must not depend on where a batch runs.
    """

    #: what identifies the computation: a resumed run must have the same key.
    def key(self) -> dict:
        return {}

    def start(self) -> dict:
        raise NotImplementedError

    def update(self, state: dict, batch: Batch, number: int) -> None:
        raise NotImplementedError

    def merge(self, total: dict, part: dict) -> dict:
        for name, value in part.items():
            total[name] = total[name] + value if name in total else value
        return total

    def prepare(self, device) -> None:
        """Called once in each process before the first update (load/move the model)."""


class ModelReduction(Reduction):
    """A reduction that runs ``self.model``: moved to the engine's device in :meth:`prepare`, and
    named in the key (:meth:`model_key`) so that a resumed run is one of the same model."""

    model: torch.nn.Module

    def model_key(self) -> dict:
        return {"model": getattr(self.model, "name", type(self.model).__name__)}

    def prepare(self, device) -> None:
        if device is not None:
            self.model.to(device)


@dataclass
class Reduced:
    """The merged state, the skipped files and how the shards went."""

    state: dict
    skips: SkipLog
    shards: int
    resumed: int
    images: int
    summary: dict | None = None  # what a caller derives from ``state`` (e.g. the batch explainer's table)
    total: int = 0  # items in the dataset (readable or not)


def shard_bounds(count: int, batch_size: int, shard_batches: int) -> list[tuple[int, int]]:
    """Consecutive index ranges of ``shard_batches`` batches each."""
    step = batch_size * max(1, shard_batches)
    return [(start, min(count, start + step)) for start in range(0, count, step)]


def run_shards(
    reduction: Reduction,
    dataset,
    bounds,
    todo: Sequence[int],
    batch_size: int,
    device,
    workers: int | None,
    strict: bool,
) -> Iterator[tuple[int, tuple[dict, list, int]]]:
    """The shards ``todo`` (ascending) through one loader: ``(shard, (state, skipped, images))`` each."""
    if not todo:
        return
    step = bounds[0][1] - bounds[0][0]
    indices = [i for shard in todo for i in range(*bounds[shard])]
    pending = list(todo)

    def finish(shard):
        return shard, (states.pop(shard), skipped.pop(shard), counts.pop(shard))

    states = {shard: None for shard in todo}
    skipped: dict[int, list] = {shard: [] for shard in todo}
    counts = {shard: 0 for shard in todo}
    for batch, failed in _batches(dataset, batch_size, workers, device, strict, indices):
        first = int(batch.indices[0]) if batch is not None else failed[0][2]
        shard = first // step
        while pending and pending[0] < shard:  # earlier shards are complete
            done = pending.pop(0)
            if states[done] is None:
                states[done] = reduction.start()
            yield finish(done)
        if states[shard] is None:
            states[shard] = reduction.start()
        skipped[shard] += [(name, reason) for name, reason, _ in failed]
        if batch is not None:
            reduction.update(states[shard], batch, first // batch_size)
            counts[shard] += len(batch.ids)
    for done in pending:
        if states[done] is None:
            states[done] = reduction.start()
        yield finish(done)


def reduce_dataset(
    reduction: Reduction,
    dataset,
    batch_size: int = 32,
    device=None,
    workers: int | None = None,
    strict: bool = False,
    resume: str | Path | None = None,
    shard_batches: int = 8,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Reduced:
    """Run ``reduction`` over ``dataset`` shard by shard and merge (see the module notes).

    Args:
        resume: folder for per-shard results; finished shards found there (written by the same
            computation on the same data) are loaded instead of recomputed.
        shard_batches: batches per shard (the unit of resuming and of Ray tasks).
        engine: ``local`` (this process + loader workers) or ``ray`` (``address`` of a cluster
            or a local Ray; ``actors`` workers, one GPU each when GPUs exist).
        progress: called with the number of images of each finished shard.
    """
    loader = dataset if isinstance(dataset, torch.utils.data.DataLoader) else None
    if loader is not None:
        bounds, batch_size = _loader_bounds(loader, resume, engine, shard_batches), loader.batch_size or 0
        dataset = loader.dataset
    else:
        bounds = shard_bounds(len(dataset), batch_size, shard_batches)
    if not bounds:
        raise ConvscopeError("the dataset is empty")
    store = ShardStore(resume, reduction, dataset, batch_size, bounds) if resume is not None else None
    done = store.finished() if store else set()
    todo = [i for i in range(len(bounds)) if i not in done]
    if loader is not None:
        reduction.prepare(device)
        computed = _loader_shards(reduction, loader, bounds, todo, device)
    elif engine == "local":
        reduction.prepare(device)
        computed = run_shards(reduction, dataset, bounds, todo, batch_size, device, workers, strict)
    elif engine == "ray":
        from .ray_engine import ray_shards

        computed = ray_shards(
            reduction, dataset, bounds, todo, batch_size, strict, address, actors, run_shards=run_shards
        )
    else:
        raise ConvscopeError(f"unknown engine {engine!r}; known: local, ray")
    total, skips, images, waiting = None, SkipLog(), 0, {}
    for i in range(len(bounds)):  # merge in shard order, whatever order shards finish in
        if i in done:
            result = store.load(i)
        else:
            while i not in waiting:
                shard, result = next(computed)
                if store:
                    store.write(shard, *result)
                if progress:
                    progress(result[2] + len(result[1]))
                waiting[shard] = result
            result = waiting.pop(i)
        state, skipped, count = result
        total = dict(state) if total is None else reduction.merge(total, state)
        skips.add(skipped)
        images += count
    if images == 0:
        raise ConvscopeError(f"no readable images ({skips.summary()})")
    size = len(dataset) if hasattr(dataset, "__len__") else images
    return Reduced(total, skips, len(bounds), len(done), images, total=size)


# --------------------------------------------------------------------- a user's DataLoader


def loader_replay_problem(loader: torch.utils.data.DataLoader) -> str | None:
    """Why the batches of ``loader`` could differ on a second run (None: they are the same)."""
    data = torch.utils.data
    if isinstance(loader.dataset, data.IterableDataset):
        return "it reads an IterableDataset (its order is its own)"
    if not isinstance(loader.sampler, data.SequentialSampler):
        kind = type(loader.sampler).__name__
        return f"its sampler is a {kind}{' (shuffle=True)' if kind == 'RandomSampler' else ''}, not sequential"
    if type(loader.batch_sampler) is not data.BatchSampler:
        return f"its batch sampler is a {type(loader.batch_sampler).__name__}, not torch's BatchSampler"
    return None


def _loader_bounds(loader, resume, engine: str, shard_batches: int) -> list[tuple[int, int]]:
    """Shards of ``shard_batches`` loader batches (one shard of everything when not resuming)."""
    if engine != "local":
        raise ConvscopeError(
            f"the {engine} engine reads a Dataset (each worker opens its own shards): pass the DataLoader's dataset"
        )
    if resume is not None:
        problem = loader_replay_problem(loader)
        if problem is not None:
            raise ConvscopeError(
                f"cannot resume from a DataLoader whose batches could differ from run to run: {problem}; "
                "use shuffle=False or pass its Dataset"
            )
        return shard_bounds(len(loader), 1, shard_batches)
    try:
        count = len(loader)
    except TypeError:  # an IterableDataset without a length: one pass, one shard
        return [(0, 0)]
    return [(0, count)] if count else []


def _loader_shards(reduction, loader, bounds, todo, device):
    """The shards ``todo`` of a user's DataLoader: ``(shard, (state, [], images))`` each. A replayable
    loader resuming skips the finished batches without reading them (a loader over the batches
    left, same dataset, collate function and workers); batch numbers stay global (seeds)."""
    step = max(1, bounds[0][1] - bounds[0][0]) if len(bounds) > 1 else None
    replay = loader_replay_problem(loader) is None
    order = list(loader.batch_sampler) if replay else None
    numbers: Sequence[int] | range = range(len(order)) if order is not None else range(2**62)
    source = loader
    if order is not None and len(todo) < len(bounds):
        numbers = [b for shard in todo for b in range(*bounds[shard])]
        source = torch.utils.data.DataLoader(
            loader.dataset,
            batch_sampler=[order[b] for b in numbers],
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
        )
    current, state, count, seen = None, None, 0, 0
    for number, item in zip(numbers, source):
        shard = number // step if step else 0
        if shard != current:
            if current is not None:
                yield current, (state, [], count)
            current, state, count = shard, reduction.start(), 0
        batch = _loader_batch(item, device, order[number] if order is not None else None, seen)
        reduction.update(state, batch, number)
        count += len(batch.ids)
        seen += len(batch.ids)
    if current is not None:
        yield current, (state, [], count)
    for shard in todo[todo.index(current) + 1 if current is not None else 0 :]:
        yield shard, (reduction.start(), [], 0)  # an empty tail (the loader held fewer batches)


def _loader_batch(item, device, positions: Sequence[int] | None, seen: int) -> Batch:
    images, labels = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ConvscopeError("a DataLoader must yield image batches (N, 3, H, W) or (images, labels)")
    count = images.shape[0]
    labels = torch.full((count,), NO_LABEL, dtype=torch.long) if labels is None else torch.as_tensor(labels).long()
    indices = torch.tensor(list(positions)) if positions is not None else torch.arange(seen, seen + count)
    return Batch(images.float().to(device or "cpu"), labels.cpu(), [str(int(i)) for i in indices], indices)


class ShardStore:
    """Per-shard results in a folder: ``run.json`` (what was computed on what) and
    ``shard-NNNNN.safetensors`` + ``.json`` (its state, skipped files, image count)."""

    def __init__(self, folder, reduction: Reduction, dataset, batch_size: int, bounds):
        self.folder = Path(folder)
        ids = getattr(dataset, "ids", None)
        fingerprint = hashlib.sha256("\n".join(ids).encode()).hexdigest() if ids is not None else str(len(dataset))
        self.run = {
            "reduction": type(reduction).__name__,
            "key": reduction.key(),
            "batch_size": batch_size,
            "shards": [list(b) for b in bounds],
            "data": fingerprint,
        }
        if self.folder.exists() and not self.folder.is_dir():
            raise ConvscopeError(f"--resume {self.folder} is a file; give a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / "run.json"
        if manifest.is_file():
            try:
                old = json.loads(manifest.read_text())
            except json.JSONDecodeError:
                raise ConvscopeError(f"{manifest} is not JSON; delete the folder to start over") from None
            if old != json.loads(json.dumps(self.run)):
                raise ConvscopeError(
                    f"{self.folder} holds results of a different run (other options or data); "
                    "use another folder or delete it"
                )
        else:
            manifest.write_text(json.dumps(self.run, indent=1))

    def _paths(self, i: int) -> tuple[Path, Path]:
        return self.folder / f"shard-{i:05d}.json", self.folder / f"shard-{i:05d}.safetensors"

    def finished(self) -> set[int]:
        """Shards whose two files are there (both are written atomically, the JSON last)."""
        return {i for i in range(len(self.run["shards"])) if all(p.is_file() for p in self._paths(i))}

    def load(self, i: int) -> tuple[dict, list, int]:
        from safetensors.torch import load_file

        meta, tensors = self._paths(i)
        try:
            info = json.loads(meta.read_text())
            state = load_file(str(tensors))
        except Exception as error:
            raise ConvscopeError(
                f"cannot read the partial result {meta.name} in {self.folder} ({type(error).__name__}); "
                "delete that shard's files to recompute it"
            ) from None
        state.update(info.get("numbers", {}))
        return state, [tuple(s) for s in info["skipped"]], int(info["images"])

    def write(self, i: int, state: dict, skipped, images: int) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
        numbers = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
        base = self.folder / f"shard-{i:05d}"
        save_file(tensors, str(base) + ".safetensors.tmp")
        os.replace(str(base) + ".safetensors.tmp", str(base) + ".safetensors")
        (self.folder / f"shard-{i:05d}.json.tmp").write_text(
            json.dumps({"images": images, "skipped": [list(s) for s in skipped], "numbers": numbers})
        )
        os.replace(self.folder / f"shard-{i:05d}.json.tmp", self.folder / f"shard-{i:05d}.json")
