"""The page and what it lists: models, bundled samples, methods, health."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse

from ...images import PHOTOS
from .. import features
from ..served import Served, served

__all__ = ["STATIC", "router"]

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter()
State = Annotated[Served, Depends(served)]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page():
    return FileResponse(STATIC / "index.html")


@router.get("/api/health")
def health(state: State) -> dict:
    return {"ok": True, "jobs": len(state.jobs), "images": len(state.images), "cached": len(state.cache)}


@router.get("/api/models")
def list_models(state: State) -> dict:
    return {"models": state.allowed, "default": state.allowed[0]}


@router.get("/api/samples")
def samples() -> dict:
    return {"samples": [f"sample:{name}" for name in PHOTOS]}


@router.get("/api/methods")
def methods() -> dict:
    return {
        "attribution": features.attribution_methods(),
        "attack": features.attack_methods(),
        "jobs": features.job_kinds(),
    }
