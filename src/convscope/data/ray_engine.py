"""The ``ray`` engine of :func:`convscope.data.reduce_dataset`: shards on a Ray Data actor pool.

Ray Data gets one row per shard (its index); ``map_batches`` runs them on an actor pool (one GPU
per actor when the cluster has GPUs, one CPU otherwise); each actor holds its copy of the
reduction (the model moved once to its device) and reads its shard's images itself through the
same loader as the local engine, so a shard's state is the same wherever it runs. States come
back as safetensors bytes + JSON (no pickle of results) and the driver merges them in shard
order, so the local and the Ray engine give equal numbers.
"""

from __future__ import annotations

__all__ = ["ray_shards"]

import json
from typing import Iterator, Sequence

import torch

from ..errors import ConvscopeError


def _start_ray(address: str | None, actors: int | None):
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
            **({} if address else {"num_cpus": actors or None}),
        )
    return ray


class _ShardActor:
    """Runs whole shards: row ``shard`` -> its state (safetensors bytes), skipped files, image count."""

    def __init__(self, reduction, dataset, bounds, batch_size: int, strict: bool, gpu: bool, run_shards):
        torch.set_num_threads(1)
        self.reduction, self.dataset, self.bounds, self.run_shards = reduction, dataset, bounds, run_shards
        self.batch_size, self.strict = batch_size, strict
        self.device = torch.device("cuda") if gpu and torch.cuda.is_available() else torch.device("cpu")
        self.reduction.prepare(self.device)

    def __call__(self, rows: dict) -> dict:
        from safetensors.torch import save

        out: dict[str, list] = {"shard": [], "tensors": [], "meta": []}
        for shard in [int(s) for s in rows["shard"]]:
            for index, (state, skipped, images) in self.run_shards(
                self.reduction, self.dataset, self.bounds, [shard], self.batch_size, self.device, 0, self.strict
            ):
                tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
                numbers = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
                out["shard"].append(index)
                out["tensors"].append(save(tensors))
                out["meta"].append(
                    json.dumps({"numbers": numbers, "skipped": [list(s) for s in skipped], "images": images})
                )
        return out


def ray_shards(
    reduction,
    dataset,
    bounds,
    todo: Sequence[int],
    batch_size: int,
    strict: bool,
    address: str | None = None,
    actors: int | None = None,
    *,
    run_shards,
) -> Iterator[tuple[int, tuple[dict, list, int]]]:
    """Compute the shards ``todo`` on Ray; yields ``(shard, (state, skipped, images))`` as they finish.

    ``run_shards`` is :func:`convscope.data.stream.run_shards` (passed in, so that this module
    does not import the one that imports it)."""
    if not todo:
        return
    ray = _start_ray(address, actors)
    from safetensors.torch import load

    gpus = int(ray.cluster_resources().get("GPU", 0))
    size = actors or (gpus if gpus else max(1, int(ray.cluster_resources().get("CPU", 1))))
    size = max(1, min(size, len(todo)))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    rows = ray.data.from_items([{"shard": int(i)} for i in todo], override_num_blocks=len(todo))
    mapped = rows.map_batches(
        _ShardActor,
        fn_constructor_args=(reduction, dataset, bounds, batch_size, strict, gpus > 0, run_shards),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size),
        batch_format="numpy",
        **({"num_gpus": 1} if gpus else {"num_cpus": 1}),
    )
    try:
        for row in mapped.iter_rows():
            meta = json.loads(row["meta"])
            state = load(bytes(row["tensors"]))
            state.update(meta["numbers"])
            yield int(row["shard"]), (state, [tuple(s) for s in meta["skipped"]], int(meta["images"]))
    except Exception as error:  # a worker's ConvscopeError (e.g. --strict) comes back wrapped
        cause = error
        while getattr(cause, "cause", None) is not None or getattr(cause, "__cause__", None) is not None:
            cause = getattr(cause, "cause", None) or cause.__cause__
            if isinstance(cause, ConvscopeError):
                raise ConvscopeError(str(cause)) from None
        text = str(error)
        if "ConvscopeError" in text:
            line = [part for part in text.splitlines() if "ConvscopeError" in part][-1]
            raise ConvscopeError(line.split("ConvscopeError:", 1)[-1].strip()) from None
        raise
