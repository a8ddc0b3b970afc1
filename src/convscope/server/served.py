"""What one web app serves and the steps every request shares: the allowed models (loaded
once; the background jobs get their own copy), the uploaded images, the result cache, the
model gate and the job runner. Each router reaches it through :func:`served`.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from typing import Any, Callable

import anyio
import torch
from fastapi import HTTPException, Request

from ..errors import ConvscopeError
from ..images import model_image
from ..models import ImageClassifier, load_model
from ..predictions import predict
from ..render import png_bytes
from .guards import Ticket, cancellation_point
from .jobs import JobCancelled, JobRunner
from .limits import ModelGate
from .schemas import ImageRequest
from .store import LRU, ImageStore, release_memory, request_key

__all__ = ["Served", "data_uri", "ranked", "served"]


class Served:
    """The state of one app (see :func:`~convscope.server.create_app` for the arguments)."""

    def __init__(
        self,
        loaded: dict[str, ImageClassifier],
        allowed: list[str],
        gate: ModelGate,
        jobs: JobRunner,
        images: ImageStore,
        cache: LRU,
        request_budget: float,
    ):
        self.loaded, self.allowed = loaded, allowed
        self.gate, self.jobs, self.images, self.cache = gate, jobs, images, cache
        self.request_budget = request_budget
        self.load_lock = threading.Lock()
        self.job_copies: dict[str, ImageClassifier] = {}

    def model_named(self, name: str | None) -> ImageClassifier:
        """An allowed model (loaded on first use; ``None``: the app's first one); 404 for any other name."""
        name = self.allowed[0] if name is None else name
        if name not in self.allowed:
            raise HTTPException(404, f"unknown model {name!r}; available: {', '.join(self.allowed)}")
        with self.load_lock:
            if name not in self.loaded:
                self.loaded[name] = load_model(name)
            return self.loaded[name]

    def job_model(self, name: str | None) -> ImageClassifier:
        """The background jobs' own copy of model ``name`` (made on first use)."""
        model = self.model_named(name)
        name = self.allowed[0] if name is None else name
        with self.load_lock:
            if name in self.job_copies:
                return self.job_copies[name]
        with self.gate.hold():  # copied while no request has its hooks on the model
            made = copy.deepcopy(model)
        with self.load_lock:
            return self.job_copies.setdefault(name, made)

    def image_for(self, request: ImageRequest) -> tuple[ImageClassifier, torch.Tensor]:
        """The request's model and its image the way the model takes it (its input size,
        preprocessing and device: :func:`~convscope.images.model_image`, the CLI's own path);
        404 for an unknown image."""
        model = self.model_named(request.model)
        picture = self.images.picture(request.image)
        if picture is None:
            raise HTTPException(
                404, f"unknown image {request.image!r}: upload it (POST /api/images) or use sample:NAME"
            )
        return model, model_image(picture, model)

    async def computed(
        self,
        http: Request,
        kind: str,
        request: ImageRequest,
        work: Callable[[ImageClassifier, torch.Tensor], dict],
    ) -> dict:
        """Answer from the cache, or run ``work(model, image)`` in a worker thread under the model
        gate and a :class:`Ticket`: stopped when the client disconnects or the budget runs out."""
        key = request_key(kind=kind, **request.model_dump())
        hit = self.cache.get(key)
        if hit is not None:
            return {**hit, "cached": True}
        ticket = Ticket(self.request_budget)

        def run() -> dict:
            model, x = self.image_for(request)
            try:
                with self.gate.hold(ticket), cancellation_point(model, ticket):
                    ticket.start()
                    start = time.perf_counter()
                    result = work(model, x)
                    result["seconds"] = round(time.perf_counter() - start, 3)
                    return result
            finally:  # after the model is free: the pass's freed buffers back to the system
                release_memory()

        try:
            result = await _until_disconnect(http, ticket, run)
        except ConvscopeError as error:
            raise HTTPException(400, str(error)) from None
        except JobCancelled as stop:
            raise HTTPException(503, f"stopped: {stop}", headers={"Retry-After": "2"}) from None
        self.cache.put(key, result)
        return {**result, "cached": False}


def served(http: Request) -> Served:
    """The :class:`Served` of the app answering ``http`` (a FastAPI dependency)."""
    return http.app.state.served


async def _until_disconnect(http: Request, ticket: Ticket, run: Callable[[], dict]) -> dict:
    """``run()`` in a worker thread; meanwhile wait for the client to disconnect and, if it does,
    cancel ``ticket`` (the computation stops at its next forward pass)."""

    async def watch() -> None:
        while True:
            message = await http.receive()
            if message["type"] == "http.disconnect":
                ticket.cancel("the client went away")
                return

    outcome: dict[str, Any] = {}
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            outcome["value"] = await anyio.to_thread.run_sync(run)
        except (Exception, JobCancelled) as error:  # raised below, not wrapped in an ExceptionGroup
            outcome["error"] = error
        finally:
            group.cancel_scope.cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def ranked(model: ImageClassifier, x: torch.Tensor, topk: int) -> list[dict[str, Any]]:
    """The top-k predictions as JSON rows."""
    return [
        {"class_id": p.class_id, "label": p.label, "probability": p.probability} for p in predict(model, x, topk)[0]
    ]


def data_uri(picture) -> str:
    """A PIL picture as a PNG ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")
