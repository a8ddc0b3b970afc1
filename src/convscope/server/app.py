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
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable

import anyio
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect
from pydantic import BaseModel, Field

from .. import __version__
from ..errors import ConvscopeError
from ..images import PHOTOS
from ..layers import layer_names, layer_table
from ..models import DEFAULT_MODEL, ImageClassifier, load_model
from ..predictions import predict
from ..render import png_bytes
from . import features
from .guards import LocalGuard, Ticket, cancellation_point, read_multipart_file
from .jobs import JobCancelled, JobRunner, QueueFull
from .limits import BodyLimit, Busy, ModelGate
from .store import LRU, ImageStore, UploadRejected, release_memory, request_key

STATIC = Path(__file__).parent / "static"


class ImageRequest(BaseModel):
    image: str = Field(description="an uploaded image id (64 hex digits) or sample:NAME", max_length=80)
    model: str = Field(DEFAULT_MODEL, max_length=80)


class PredictRequest(ImageRequest):
    topk: int = Field(5, ge=1, le=20)


class ExplainRequest(ImageRequest):
    method: str = Field("gradcam", max_length=40)
    layer: str | None = Field(
        None, max_length=120, description="dotted layer name (CAM methods); default: the model's CAM layer"
    )
    target: int | None = Field(None, ge=0, description="class id (default: the top prediction)")


class AttackRequest(ImageRequest):
    method: str = Field("fgsm", max_length=40)
    eps: float = Field(2 / 255, ge=0, le=0.25, description="L-inf budget in pixel units")


class JobRequest(ImageRequest):
    kind: str = Field(description="one of GET /api/jobs/kinds", max_length=40)
    steps: int | None = Field(None, ge=1, le=512)
    target: int | None = Field(None, ge=0)


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
    loaded: dict[str, ImageClassifier] = dict(models or {})
    allowed = list(allowed_models or loaded or [DEFAULT_MODEL])
    load_lock = threading.Lock()
    job_copies: dict[str, ImageClassifier] = {}
    gate = ModelGate(max_waiting, wait_timeout)
    jobs = JobRunner(max_queued_jobs, abandon_after=abandon_after)  # its own lock: jobs never block requests
    images = ImageStore(max_pixels=max_pixels)
    cache = LRU(cache_size)

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
    app.state.jobs, app.state.images, app.state.cache, app.state.gate = jobs, images, cache, gate

    def model_named(name: str) -> ImageClassifier:
        if name not in allowed:
            raise HTTPException(404, f"unknown model {name!r}; available: {', '.join(allowed)}")
        with load_lock:
            if name not in loaded:
                loaded[name] = load_model(name)
            return loaded[name]

    def job_model(name: str) -> ImageClassifier:
        """The background jobs' own copy of model ``name`` (made on first use)."""
        model = model_named(name)
        with load_lock:
            if name in job_copies:
                return job_copies[name]
        with gate.hold():  # copied while no request has its hooks on the model
            made = copy.deepcopy(model)
        with load_lock:
            return job_copies.setdefault(name, made)

    app.state.job_model = job_model

    def image_for(request: ImageRequest) -> tuple[ImageClassifier, torch.Tensor]:
        model = model_named(request.model)
        x = images.tensor(request.image, model.input_size)
        if x is None:
            raise HTTPException(
                404, f"unknown image {request.image!r}: upload it (POST /api/images) or use sample:NAME"
            )
        return model, x

    async def computed(
        http: Request, kind: str, request: ImageRequest, work: Callable[[ImageClassifier, torch.Tensor], dict]
    ) -> dict:
        """Answer from the cache, or run ``work(model, image)`` in a worker thread under the model
        gate and a :class:`Ticket`: stopped when the client disconnects or the budget runs out."""
        key = request_key(kind=kind, **request.model_dump())
        hit = cache.get(key)
        if hit is not None:
            return {**hit, "cached": True}
        ticket = Ticket(request_budget)

        def run() -> dict:
            model, x = image_for(request)
            try:
                with gate.hold(ticket), cancellation_point(model, ticket):
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
        cache.put(key, result)
        return {**result, "cached": False}

    @app.exception_handler(Busy)
    async def busy(request, error: Busy):
        return JSONResponse({"detail": f"busy: {error}"}, status_code=503, headers={"Retry-After": "2"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True, "jobs": len(jobs), "images": len(images), "cached": len(cache)}

    @app.get("/api/models")
    def list_models() -> dict:
        return {"models": allowed, "default": allowed[0]}

    @app.get("/api/samples")
    def samples() -> dict:
        return {"samples": [f"sample:{name}" for name in PHOTOS]}

    @app.get("/api/methods")
    def methods() -> dict:
        return {
            "attribution": features.attribution_methods(),
            "attack": features.attack_methods(),
            "jobs": features.job_kinds(),
        }

    @app.post("/api/images", status_code=201, openapi_extra=_UPLOAD_SCHEMA)
    async def upload(http: Request) -> dict:
        """Upload an image (multipart field ``file``): kept in memory, never written to disk."""
        try:
            data = await read_multipart_file(http, "file")
        except ClientDisconnect:  # the body limit answered 413 already (or the client left)
            raise HTTPException(413, "request body over the limit") from None
        except ValueError as error:
            raise HTTPException(
                400, f"malformed multipart body: {str(error).splitlines()[0] if str(error) else ''}"
            ) from None
        if data is None:
            raise HTTPException(422, "expected a multipart/form-data body with a 'file' part")
        try:  # decoding and shrinking take a moment: off the event loop
            image_id, (width, height) = await anyio.to_thread.run_sync(images.add, data)
        except UploadRejected as error:
            raise HTTPException(error.status, str(error)) from None
        return {"id": image_id, "width": width, "height": height, "bytes": len(data)}

    @app.get("/api/layers")
    def layers(model: str = DEFAULT_MODEL) -> dict:
        network = model_named(model)
        key = request_key(kind="layers", model=model)
        if (hit := cache.get(key)) is None:
            with gate.hold():
                hit = {
                    "model": model,
                    "input_size": network.input_size,
                    "layers": [_layer_row(row) for row in layer_table(network, network.input_size)],
                }
            cache.put(key, hit)
        return hit

    @app.post("/api/predict")
    async def predict_endpoint(request: PredictRequest, http: Request) -> dict:
        return await computed(
            http, "predict", request, lambda model, x: {"predictions": _ranked(model, x, request.topk)}
        )

    @app.post("/api/explain")
    async def explain(request: ExplainRequest, http: Request) -> dict:
        if request.method not in features.attribution_methods():
            raise HTTPException(
                404,
                f"unknown method {request.method!r}; available: "
                f"{', '.join(features.attribution_methods()) or 'none installed'}",
            )

        def work(model: ImageClassifier, x: torch.Tensor) -> dict:
            if request.layer is not None and request.layer not in layer_names(model):
                raise HTTPException(404, f"unknown layer {request.layer!r}; see GET /api/layers")
            ranked = _ranked(model, x, 5)
            target = request.target if request.target is not None else ranked[0]["class_id"]
            picture, layer = features.explain(model, x, request.method, target, request.layer)
            label = model.labels[target] if model.labels else str(target)
            return {
                "overlay": _data_uri(picture),
                "target": {"class_id": target, "label": label},
                "layer": layer,
                "method": request.method,
                "predictions": ranked,
            }

        return await computed(http, "explain", request, work)

    @app.post("/api/attack")
    async def attack(request: AttackRequest, http: Request) -> dict:
        if request.method not in features.attack_methods():
            raise HTTPException(
                404,
                f"unknown attack {request.method!r}; available: "
                f"{', '.join(features.attack_methods()) or 'none installed'}",
            )
        return await computed(
            http, "attack", request, lambda model, x: features.attack(model, x, request.method, request.eps, _data_uri)
        )

    @app.get("/api/jobs/kinds")
    def job_kinds() -> dict:
        return {"kinds": features.job_kinds()}

    @app.post("/api/jobs", status_code=202)
    def start_job(request: JobRequest) -> dict:
        if request.kind not in features.job_kinds():
            raise HTTPException(404, f"unknown job kind {request.kind!r}; available: {', '.join(features.job_kinds())}")
        model = job_model(request.model)
        _, x = image_for(request)
        work = features.job(request.kind, model, x, request.image, steps=request.steps, target=request.target)

        def cancellable(report) -> dict:  # every forward pass of the job's model checks its cancel flag
            with cancellation_point(model, Ticket(check=report.check)):
                return work(report)

        try:
            job = jobs.submit(request.kind, cancellable)
        except QueueFull as error:
            raise HTTPException(429, str(error), headers={"Retry-After": "5"}) from None
        return job.public()

    def job_named(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        job = job_named(job_id)
        public = job.public()
        if job.status == "done" and isinstance(job.result, dict):
            public["result"] = {k: v for k, v in job.result.items() if k != "html"}
            if "html" in job.result:
                public["result"]["html_url"] = f"/api/jobs/{job.id}/report.html"
        return public

    @app.delete("/api/jobs/{job_id}")
    def cancel_job(job_id: str) -> dict:
        job_named(job_id)
        return jobs.cancel(job_id).public()

    @app.get("/api/jobs/{job_id}/report.html", response_class=HTMLResponse)
    def job_report(job_id: str):
        job = job_named(job_id)
        if job.status != "done" or not isinstance(job.result, dict) or "html" not in job.result:
            raise HTTPException(404, "this job has no finished report")
        return HTMLResponse(job.result["html"])

    return app


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "an image file (PNG, JPEG, WebP, GIF, BMP, TIFF)",
                        }
                    },
                }
            }
        },
    }
}


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


def _ranked(model: ImageClassifier, x: torch.Tensor, topk: int) -> list[dict[str, Any]]:
    return [
        {"class_id": p.class_id, "label": p.label, "probability": p.probability} for p in predict(model, x, topk)[0]
    ]


def _layer_row(row) -> dict:
    field = row.receptive_field
    return {
        "name": row.name,
        "type": row.type,
        "shape": list(row.output_shape) if row.output_shape else None,
        "unusable": row.unusable,
        "receptive_field": None
        if field is None
        else {
            "size": None if field.size is None else list(field.size),
            "jump": list(field.jump),
            "start": list(field.start),
        },
    }


def _data_uri(picture) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")
