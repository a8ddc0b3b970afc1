"""The FastAPI app of ``convscope serve``: the HTTP API (documented at ``/docs``) and the page.

Every name a client sends (model, image id, layer, method, sample) is checked against a
known set before it is used, and nothing a client sends becomes a file path: uploads live
in memory under the SHA-256 of their bytes (decoded in a worker thread, after the header's
size is checked). One model copy serves interactive requests, one computation at a time
(:class:`~convscope.server.limits.ModelGate`); long jobs run in the background worker
(:class:`~convscope.server.jobs.JobRunner`) on a second copy, so they never make a
predict wait. Every computation runs under a :class:`~convscope.server.guards.Ticket`:
each forward pass checks it, so a request whose client went away, a request over its
time budget, or a cancelled job stops at its next pass. Results are cached by a hash of
(image, model, method, parameters). Only the bound host names are answered and
cross-origin state-changing requests are refused (:class:`~convscope.server.guards.LocalGuard`).

The endpoints are FastAPI routers, one per concern (:mod:`convscope.server.routes`); what they
share (models, images, cache, gate, jobs) is one :class:`~convscope.server.served.Served` in
``app.state.served``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..models import DEFAULT_MODEL, ImageClassifier
from .guards import LocalGuard
from .jobs import JobRunner
from .limits import BodyLimit, Busy, ModelGate
from .routes import ROUTERS
from .routes.pages import STATIC
from .served import Served
from .store import LRU, ImageStore

__all__ = ["create_app"]


def create_app(
    models: dict[str, ImageClassifier] | None = None,
    allowed_models: list[str] | None = None,
    max_upload_bytes: int = 8 * 2**20,
    max_pixels: int = 40_000_000,
    max_waiting: int = 8,
    wait_timeout: float = 60.0,
    max_queued_jobs: int = 4,
    abandon_after: float = 60.0,
    cache_size: int = 128,
    request_budget: float = 30.0,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """Build the web app.

    Args:
        models: already loaded models by name (e.g. the one ``convscope serve --model`` opened);
            other allowed names are loaded on first use and kept (one copy per process).
        allowed_models: the model names clients may ask for (default: the names in ``models``,
            or the embedded model). Clients never name files.
        max_upload_bytes: request bodies over this are answered 413.
        max_pixels: decoded images over this many pixels are answered 413.
        max_waiting: requests waiting for the model beyond this are answered 503.
        wait_timeout: seconds a request waits for the model before a 503.
        max_queued_jobs: waiting long jobs beyond this are answered 429.
        abandon_after: a job nobody polled for this many seconds is cancelled.
        cache_size: computed results kept (least recently used evicted).
        request_budget: seconds one interactive computation may take; it stops at its next
            forward pass after that and is answered 503 (long work belongs in a job).
        allowed_hosts: the ``Host`` names answered (default 127.0.0.1, localhost, ::1; add the
            name given to ``--host``); ``["*"]`` answers any.
    """
    jobs = JobRunner(max_queued_jobs, abandon_after=abandon_after)  # its own lock: jobs never block requests
    state = Served(
        loaded=dict(models or {}),
        allowed=list(allowed_models or models or [DEFAULT_MODEL]),
        gate=ModelGate(max_waiting, wait_timeout),
        jobs=jobs,
        images=ImageStore(max_pixels=max_pixels),
        cache=LRU(cache_size),
        request_budget=request_budget,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        jobs.stop()

    app = FastAPI(
        title="convscope",
        version=__version__,
        lifespan=lifespan,
        description="See what a CNN sees: predictions, layers, attributions, attacks, long jobs. "
        "The page at / uses exactly this API.",
    )
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.add_middleware(LocalGuard, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost", "::1"])
    app.state.served = state
    app.state.jobs, app.state.images, app.state.cache, app.state.gate = jobs, state.images, state.cache, state.gate
    app.state.job_model = state.job_model

    @app.exception_handler(Busy)
    async def busy(request, error: Busy):
        return JSONResponse({"detail": f"busy: {error}"}, status_code=503, headers={"Retry-After": "2"})

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
