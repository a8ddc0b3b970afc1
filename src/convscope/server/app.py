"""The FastAPI app of ``convscope serve``: the HTTP API (documented at ``/docs``) and the page.

Every name a client sends (model, image id, layer, method, sample) is checked against a
known set before it is used, and nothing a client sends becomes a file path: uploads live
in memory under the SHA-256 of their bytes. One model copy per process serves all
requests, one computation at a time (:class:`~convscope.server.limits.ModelGate`); long
jobs run in the background worker (:class:`~convscope.server.jobs.JobRunner`); results
are cached by a hash of (image, model, method, parameters).
"""

from __future__ import annotations

import base64
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable

import torch
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..errors import ConvscopeError
from ..images import PHOTOS
from ..layers import layer_names, layer_table
from ..models import DEFAULT_MODEL, ImageClassifier, load_model
from ..predictions import predict
from ..render import png_bytes
from . import features
from .jobs import JobRunner, QueueFull
from .limits import BodyLimit, Busy, ModelGate
from .store import LRU, ImageStore, UploadRejected, request_key

STATIC = Path(__file__).parent / "static"


class ImageRequest(BaseModel):
    image: str = Field(description="an uploaded image id (64 hex digits) or sample:NAME", max_length=80)
    model: str = Field(DEFAULT_MODEL, max_length=80)


class PredictRequest(ImageRequest):
    topk: int = Field(5, ge=1, le=20)


class ExplainRequest(ImageRequest):
    method: str = Field("gradcam", max_length=40)
    layer: str | None = Field(None, max_length=120, description="dotted layer name (CAM methods); default: the model's CAM layer")
    target: int | None = Field(None, ge=0, description="class id (default: the top prediction)")


class AttackRequest(ImageRequest):
    method: str = Field("fgsm", max_length=40)
    eps: float = Field(2 / 255, ge=0, le=0.25, description="L-inf budget in pixel units")


class JobRequest(ImageRequest):
    kind: str = Field(description="one of GET /api/jobs/kinds", max_length=40)
    steps: int | None = Field(None, ge=1, le=512)
    target: int | None = Field(None, ge=0)


def create_app(models: dict[str, ImageClassifier] | None = None, allowed_models: list[str] | None = None,
               max_upload_bytes: int = 8 * 2**20, max_pixels: int = 40_000_000, max_waiting: int = 8,
               wait_timeout: float = 60.0, max_queued_jobs: int = 4, abandon_after: float = 60.0,
               cache_size: int = 128) -> FastAPI:
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
    """
    loaded: dict[str, ImageClassifier] = dict(models or {})
    allowed = list(allowed_models or loaded or [DEFAULT_MODEL])
    load_lock = threading.Lock()
    gate = ModelGate(max_waiting, wait_timeout)
    jobs = JobRunner(max_queued_jobs, abandon_after=abandon_after, lock=gate.lock)
    images = ImageStore(max_pixels=max_pixels)
    cache = LRU(cache_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        jobs.stop()

    app = FastAPI(title="convscope", version="0.1.0", lifespan=lifespan,
                  description="See what a CNN sees: predictions, layers, attributions, attacks, long jobs. "
                              "The page at / uses exactly this API.")
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.state.jobs, app.state.images, app.state.cache, app.state.gate = jobs, images, cache, gate

    def model_named(name: str) -> ImageClassifier:
        if name not in allowed:
            raise HTTPException(404, f"unknown model {name!r}; available: {', '.join(allowed)}")
        with load_lock:
            if name not in loaded:
                loaded[name] = load_model(name)
            return loaded[name]

    def image_for(request: ImageRequest) -> tuple[ImageClassifier, torch.Tensor]:
        model = model_named(request.model)
        x = images.tensor(request.image, model.input_size)
        if x is None:
            raise HTTPException(404, f"unknown image {request.image!r}: upload it (POST /api/images) or use sample:NAME")
        return model, x

    def computed(kind: str, request: BaseModel, work: Callable[[], dict]) -> dict:
        key = request_key(kind=kind, **request.model_dump())
        hit = cache.get(key)
        if hit is not None:
            return {**hit, "cached": True}
        try:
            with gate.hold():
                start = time.perf_counter()
                result = work()
                result["seconds"] = round(time.perf_counter() - start, 3)
        except ConvscopeError as error:
            raise HTTPException(400, str(error)) from None
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
        return {"attribution": features.attribution_methods(), "attack": features.attack_methods(),
                "jobs": features.job_kinds()}

    @app.post("/api/images", status_code=201)
    async def upload(file: UploadFile = File(description="an image file (PNG, JPEG, WebP, GIF, BMP, TIFF)")) -> dict:
        data = await file.read()
        try:
            image_id, (width, height) = images.add(data)
        except UploadRejected as error:
            raise HTTPException(error.status, str(error)) from None
        return {"id": image_id, "width": width, "height": height, "bytes": len(data)}

    @app.get("/api/layers")
    def layers(model: str = DEFAULT_MODEL) -> dict:
        network = model_named(model)
        key = request_key(kind="layers", model=model)
        if (hit := cache.get(key)) is None:
            with gate.hold():
                hit = {"model": model, "input_size": network.input_size, "layers": [_layer_row(row) for row in
                                                                                     layer_table(network, network.input_size)]}
            cache.put(key, hit)
        return hit

    @app.post("/api/predict")
    def predict_endpoint(request: PredictRequest) -> dict:
        model, x = image_for(request)
        return computed("predict", request, lambda: {"predictions": _ranked(model, x, request.topk)})

    @app.post("/api/explain")
    def explain(request: ExplainRequest) -> dict:
        model, x = image_for(request)
        if request.method not in features.attribution_methods():
            raise HTTPException(404, f"unknown method {request.method!r}; available: "
                                     f"{', '.join(features.attribution_methods()) or 'none installed'}")
        if request.layer is not None and request.layer not in layer_names(model):
            raise HTTPException(404, f"unknown layer {request.layer!r}; see GET /api/layers")

        def work() -> dict:
            ranked = _ranked(model, x, 5)
            target = request.target if request.target is not None else ranked[0]["class_id"]
            picture, layer = features.explain(model, x, request.method, target, request.layer)
            label = model.labels[target] if model.labels else str(target)
            return {"overlay": _data_uri(picture), "target": {"class_id": target, "label": label},
                    "layer": layer, "method": request.method, "predictions": ranked}

        return computed("explain", request, work)

    @app.post("/api/attack")
    def attack(request: AttackRequest) -> dict:
        model, x = image_for(request)
        if request.method not in features.attack_methods():
            raise HTTPException(404, f"unknown attack {request.method!r}; available: "
                                     f"{', '.join(features.attack_methods()) or 'none installed'}")
        return computed("attack", request, lambda: features.attack(model, x, request.method, request.eps, _data_uri))

    @app.get("/api/jobs/kinds")
    def job_kinds() -> dict:
        return {"kinds": features.job_kinds()}

    @app.post("/api/jobs", status_code=202)
    def start_job(request: JobRequest) -> dict:
        if request.kind not in features.job_kinds():
            raise HTTPException(404, f"unknown job kind {request.kind!r}; available: {', '.join(features.job_kinds())}")
        model, x = image_for(request)
        work = features.job(request.kind, model, x, request.image, steps=request.steps, target=request.target)
        try:
            job = jobs.submit(request.kind, work)
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


def _ranked(model: ImageClassifier, x: torch.Tensor, topk: int) -> list[dict[str, Any]]:
    return [{"class_id": p.class_id, "label": p.label, "probability": p.probability} for p in predict(model, x, topk)[0]]


def _layer_row(row) -> dict:
    field = row.receptive_field
    return {"name": row.name, "type": row.type, "shape": list(row.output_shape) if row.output_shape else None,
            "receptive_field": None if field is None else
            {"size": None if field.size is None else list(field.size), "jump": list(field.jump), "start": list(field.start)}}


def _data_uri(picture) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")
