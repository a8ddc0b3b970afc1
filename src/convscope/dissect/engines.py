"""Where a mining pass runs: ``local`` (this process) or ``ray`` (one machine or a cluster).

Both fold the images ``result.seen .. total`` into the same :class:`TopExamples`. The Ray
engine splits the image indices into blocks, mines each block's top-k lists in parallel on the
actor pool kept for the process (:mod:`convscope.data.ray_engine`; the model shipped once per
call, not per block) and merges the
lists on the driver with the same value-then-index order as the local pass, so both engines
give identical results on the same images. A Ray pass is all-or-nothing: Ctrl-C keeps the
results of the images before it, not a partial Ray run.
"""

from __future__ import annotations

from typing import Callable

import torch

from .examples.mining import mine_range
from .examples.resume import state_bytes, state_from_bytes
from .examples.sources import ImageSource
from .examples.types import LayerExamples, TopExamples
from .registry import ENGINES, get_engine

__all__ = ["ENGINES", "get_engine", "local_engine", "ray_engine"]


@ENGINES.register("local")
def local_engine(
    model,
    source: ImageSource,
    result: TopExamples,
    batch_size: int,
    device,
    progress: bool = True,
    save: Callable[[], None] | None = None,
    save_every: int = 20,
    **_,
) -> None:
    """Mine in this process, one batch at a time, with a progress bar and periodic checkpoints."""
    from ..progress import progress_bar

    total = len(source)
    with progress_bar(
        total, "mining examples", progress, interrupted=None, completed=result.seen, remaining=True
    ) as step:
        batches = [0]

        def advance(count: int) -> None:
            step(count)
            batches[0] += 1
            if save is not None and batches[0] % save_every == 0:
                save()

        mine_range(model, source, result, result.seen, total, batch_size, device, advance)


class _MiningJob:
    """One Ray mining pass on the kept actor pool: a block of image indices -> its top-k lists."""

    def __init__(self, model, source: ImageSource, template: bytes, batch_size: int):
        self.model = model  # the caller's own model, shipped by Ray (never read from a file)
        self.source, self.template, self.batch_size = source, template, batch_size
        self.source.workers = 0  # an actor decodes its own blocks (no loader processes inside it)

    def prepare(self, device) -> None:
        self.device = device
        self.model.to(device)

    def __call__(self, indices: list[int]) -> tuple[bytes, int]:
        shard = TopExamples.from_state(state_from_bytes(self.template)[0])
        shard.seen = 0
        for first, stop in _runs(indices):
            mine_range(self.model, self.source, shard, first, stop, self.batch_size, self.device)
        return state_bytes(shard.state()), len(indices)


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive index runs [(start, stop), ...] of a sorted block."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and runs[-1][1] == index:
            runs[-1][1] = index + 1
        else:
            runs.append([index, index + 1])
    return [(a, b) for a, b in runs]


@ENGINES.register("ray")
def ray_engine(
    model,
    source: ImageSource,
    result: TopExamples,
    batch_size: int,
    device,
    progress: bool = True,
    address: str | None = None,
    shards: int | None = None,
    **_,
) -> None:
    """Mine on the kept Ray actor pool (:mod:`convscope.data.ray_engine`): ``address`` of a
    running cluster, or ``None`` to start (or reuse) a local Ray; ``shards`` actors (default: one
    per CPU, or per GPU when the cluster has GPUs), each mining blocks of ``batch_size`` images."""
    from ..data.ray_engine import on_pool

    empty = {name: LayerExamples.empty(r.channels, result.k, r.field, r.map_size) for name, r in result.layers.items()}
    template = state_bytes(TopExamples(empty, result.k, result.size).state())
    shipped = model if device == torch.device("cpu") or str(device) == "cpu" else _cpu_copy(model)
    remaining = list(range(result.seen, len(source)))
    blocks = [remaining[start : start + batch_size] for start in range(0, len(remaining), batch_size)]
    for state, count in on_pool(_MiningJob(shipped, source, template, batch_size), blocks, address, shards):
        shard = TopExamples.from_state(state_from_bytes(state, "a Ray shard")[0])
        for name, record in result.layers.items():
            record.combine(shard.layers[name])
        result.seen += int(count)


def _cpu_copy(model):
    import copy

    return copy.deepcopy(model).cpu()
