"""The ``ray`` engine: a pool of Ray actors kept for the process, and the shards of
:func:`convscope.data.reduce_dataset` run on it.

Starting Ray and its worker processes (each imports torch and convscope) is nearly all the cost
of a Ray call on a small job, so the actors are started once and kept: every later call with
the same cluster ``address`` and number of actors reuses them (another address or count, or a
Ray that was shut down, gets a new pool); they are killed, and a Ray this module started is
shut down, when the process exits (or by :func:`close_pool`). An actor holds one GPU when the
cluster has GPUs, one CPU otherwise.

A call ships its *job* (the reduction with its model, the dataset, the shard bounds) once
through Ray's object store; each actor loads it (moving the model to its device) and then runs
items (shards) as they are handed out, one at a time per actor. The model travels with every
call, so weights changed between calls (a model trained in a notebook) or another model never
meet a stale copy. Each shard reads its images itself through the same loader as the local
engine, so a shard's state is the same wherever it runs; states come back as safetensors bytes
+ JSON and the driver merges them in shard order, so the local and the Ray engine give equal
numbers. Ray core actors rather than Ray Data's ``map_batches`` pool: a Ray Data pool lives
only as long as one dataset's execution.
"""

from __future__ import annotations

__all__ = ["close_pool", "on_pool", "ray_shards"]

import atexit
import json
from typing import Any, Iterable, Iterator, Sequence

import torch

from ..errors import ConvscopeError

_POOL: dict[str, Any] = {}  # "key": (address, actors, Ray's job id), "actors": handles, "started": we ran ray.init


def _ray():
    try:
        import ray
    except ImportError:
        raise ConvscopeError("the ray engine needs Ray: pip install 'convscope[ray]'") from None
    return ray


class _Worker:
    """A pool actor: ``load(job)`` once per call (``job.prepare(device)``), then ``run(item)`` -> ``job(item)``."""

    def __init__(self, gpu: bool):
        torch.set_num_threads(1)
        self.device = torch.device("cuda") if gpu and torch.cuda.is_available() else torch.device("cpu")
        self.job = None

    def load(self, job) -> None:
        self.job = None  # the previous call's model is freed before the next one is moved to the device
        job.prepare(self.device)
        self.job = job

    def run(self, item):
        return self.job(item)


def _pool(address: str | None, actors: int | None) -> list:
    """The kept actors for ``address`` / ``actors`` (started, with Ray if needed, on first use)."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **({} if address else {"num_cpus": actors or None}),
        )
        started = True
    key = (address, actors, ray.get_runtime_context().get_job_id())
    if _POOL.get("key") == key:
        return _POOL["actors"]
    if _POOL.get("key", (None, None, None))[2] == key[2]:
        close_pool(shutdown=False)  # same Ray, other settings (a Ray shut down took its actors with it)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    size = actors or (gpus if gpus else max(1, int(ray.cluster_resources().get("CPU", 1))))
    remote = ray.remote(**({"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}))(_Worker)
    _POOL.update(key=key, actors=[remote.remote(gpus > 0) for _ in range(size)])
    _POOL["started"] = _POOL.get("started", False) or started
    return _POOL["actors"]


def close_pool(shutdown: bool = True) -> None:
    """Kill the kept actors; with ``shutdown``, also stop Ray if this module started it (at exit)."""
    ray = _ray()
    if ray.is_initialized():
        if _POOL.get("key", (None, None, None))[2] == ray.get_runtime_context().get_job_id():
            for actor in _POOL.get("actors", []):
                ray.kill(actor)
        if shutdown and _POOL.get("started"):
            ray.shutdown()
    _POOL.pop("key", None)
    _POOL.pop("actors", None)
    if shutdown:
        _POOL.pop("started", None)


atexit.register(close_pool)


def on_pool(job, items: Iterable, address: str | None = None, actors: int | None = None) -> Iterator:
    """``job(item)`` for every item on the kept actors; yields the results as they finish.

    A :class:`ConvscopeError` raised in an actor is raised here with its own message."""
    items = list(items)
    if not items:
        return
    ray = _ray()
    from ray.util import ActorPool

    pool = _pool(address, actors)[: len(items)]
    shipped = ray.put(job)
    try:
        ray.get([actor.load.remote(shipped) for actor in pool])
        yield from ActorPool(pool).map_unordered(lambda actor, item: actor.run.remote(item), items)
    except Exception as error:  # an actor's ConvscopeError (e.g. --strict) comes back wrapped
        raise _unwrapped(error) from None


def _unwrapped(error: Exception) -> Exception:
    """The innermost :class:`ConvscopeError` in Ray's wrappers, as a plain one (else ``error``)."""
    cause: BaseException | None = error
    while cause is not None:
        inner = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, ConvscopeError) and not isinstance(inner, ConvscopeError):
            return ConvscopeError(str(cause).strip().splitlines()[-1].split("ConvscopeError:", 1)[-1].strip())
        cause = inner
    return error


class _ShardJob:
    """One call of :func:`ray_shards`: shard index -> ``(shard, state safetensors bytes, JSON)``."""

    def __init__(self, reduction, dataset, bounds, batch_size: int, strict: bool, run_shards):
        self.reduction, self.dataset, self.bounds, self.run_shards = reduction, dataset, bounds, run_shards
        self.batch_size, self.strict = batch_size, strict

    def prepare(self, device) -> None:
        self.device = device
        self.reduction.prepare(device)

    def __call__(self, shard: int) -> tuple[int, bytes, str]:
        from safetensors.torch import save

        ((index, (state, skipped, images)),) = self.run_shards(
            self.reduction, self.dataset, self.bounds, [shard], self.batch_size, self.device, 0, self.strict
        )
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
        numbers = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
        meta = {"numbers": numbers, "skipped": [list(s) for s in skipped], "images": images}
        return index, save(tensors), json.dumps(meta)


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
    """Compute the shards ``todo`` on the kept pool; yields ``(shard, (state, skipped, images))`` as they finish.

    ``run_shards`` is :func:`convscope.data.stream.run_shards` (passed in, so that this module
    does not import the one that imports it)."""
    from safetensors.torch import load

    job = _ShardJob(reduction, dataset, bounds, batch_size, strict, run_shards)
    for shard, tensors, text in on_pool(job, [int(i) for i in todo], address, actors):
        meta = json.loads(text)
        state = load(tensors)
        state.update(meta["numbers"])
        yield int(shard), (state, [tuple(s) for s in meta["skipped"]], int(meta["images"]))
