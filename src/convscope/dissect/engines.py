"""Where a mining pass runs: ``local`` (this process) or ``ray`` (Ray Data, one machine or a cluster).

Both fold the images ``result.seen .. total`` into the same :class:`TopExamples`. The Ray
engine splits the image indices into blocks, mines each block's top-k lists in parallel
workers (``map_batches`` over an actor pool, the model shipped once per actor) and merges the
lists on the driver with the same value-then-index order as the local pass, so both engines
give identical results on the same images. A Ray pass is all-or-nothing: Ctrl-C keeps the
results of the images before it, not a partial Ray run.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConvscopeError
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


class _ShardMiner:
    """A Ray Data actor: mines the image indices of each block it gets; returns its top-k lists."""

    def __init__(self, model, source: ImageSource, template: bytes, batch_size: int):
        torch.set_num_threads(1)
        self.model = model  # the caller's own model, shipped by Ray (never read from a file)
        self.source, self.template, self.batch_size = source, template, batch_size
        self.source.workers = 0  # an actor decodes its own blocks (no loader processes inside it)

    def __call__(self, block: dict) -> dict:
        indices = [int(i) for i in block["index"]]
        shard = TopExamples.from_state(state_from_bytes(self.template)[0])
        shard.seen = 0
        for first, stop in _runs(indices):
            mine_range(self.model, self.source, shard, first, stop, self.batch_size, "cpu")
        # a final non-zero byte: numpy bytes columns drop trailing zero bytes
        return {"state": [state_bytes(shard.state()) + b"\xff"], "count": [len(indices)]}


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
    """Mine on Ray Data: ``address`` of a running cluster, or ``None`` to start (or reuse) a local Ray.

    Workers run on CPU (their own copy of the model); ``shards`` actors mine blocks of about
    ``batch_size`` images each.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConvscopeError("the ray engine needs Ray Data: pip install 'convscope[ray]'") from None
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **({} if address else {"num_cpus": shards}),
        )
    shards = shards or max(1, int(ray.cluster_resources().get("CPU", 1)))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    empty = {name: LayerExamples.empty(r.channels, result.k, r.field, r.map_size) for name, r in result.layers.items()}
    template = state_bytes(TopExamples(empty, result.k, result.size).state())
    shipped = model if device == torch.device("cpu") or str(device) == "cpu" else _cpu_copy(model)
    remaining = list(range(result.seen, len(source)))
    dataset = ray.data.from_items(
        [{"index": i} for i in remaining], override_num_blocks=max(1, len(remaining) // batch_size)
    )
    mined = dataset.map_batches(
        _ShardMiner,
        fn_constructor_args=(shipped, source, template, batch_size),
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=shards),
        num_cpus=1,
        batch_format="numpy",
    )
    for row in mined.iter_rows():
        shard = TopExamples.from_state(state_from_bytes(bytes(row["state"])[:-1], "a Ray shard")[0])
        for name, record in result.layers.items():
            record.combine(shard.layers[name])
        result.seen += int(row["count"])


def _cpu_copy(model):
    import copy

    return copy.deepcopy(model).cpu()
