"""Long jobs (the full report, DeepDream, class visualization): started, polled, cancelled;
they run in the background worker on the jobs' own model copy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse

from .. import features
from ..guards import Ticket, cancellation_point
from ..jobs import QueueFull
from ..schemas import JobRequest
from ..served import Served, served

__all__ = ["router"]

router = APIRouter()
State = Annotated[Served, Depends(served)]


@router.get("/api/jobs/kinds")
def job_kinds() -> dict:
    return {"kinds": features.job_kinds()}


@router.post("/api/jobs", status_code=202)
def start_job(request: JobRequest, state: State) -> dict:
    if request.kind not in features.job_kinds():
        raise HTTPException(404, f"unknown job kind {request.kind!r}; available: {', '.join(features.job_kinds())}")
    model = state.job_model(request.model)
    _, x = state.image_for(request)
    work = features.job(request.kind, model, x, request.image, steps=request.steps, target=request.target)

    def cancellable(report) -> dict:  # every forward pass of the job's model checks its cancel flag
        with cancellation_point(model, Ticket(check=report.check)):
            return work(report)

    try:
        job = state.jobs.submit(request.kind, cancellable)
    except QueueFull as error:
        raise HTTPException(429, str(error), headers={"Retry-After": "5"}) from None
    return job.public()


def _job_named(state: Served, job_id: str):
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.get("/api/jobs/{job_id}")
def job_status(job_id: str, state: State) -> dict:
    job = _job_named(state, job_id)
    public = job.public()
    if job.status == "done" and isinstance(job.result, dict):
        public["result"] = {k: v for k, v in job.result.items() if k != "html"}
        if "html" in job.result:
            public["result"]["html_url"] = f"/api/jobs/{job.id}/report.html"
    return public


@router.delete("/api/jobs/{job_id}")
def cancel_job(job_id: str, state: State) -> dict:
    _job_named(state, job_id)
    return state.jobs.cancel(job_id).public()


@router.get("/api/jobs/{job_id}/report.html", response_class=HTMLResponse)
def job_report(job_id: str, state: State):
    job = _job_named(state, job_id)
    if job.status != "done" or not isinstance(job.result, dict) or "html" not in job.result:
        raise HTTPException(404, "this job has no finished report")
    return HTMLResponse(job.result["html"])
