"""The request bodies of the web app's API (pydantic models: validated, documented at ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["AttackRequest", "ExplainRequest", "ImageRequest", "JobRequest", "PredictRequest"]


class ImageRequest(BaseModel):
    image: str = Field(description="an uploaded image id (64 hex digits) or sample:NAME", max_length=80)
    model: str | None = Field(
        None, max_length=1024, description="one of GET /api/models (default: its first, the model `serve` opened)"
    )


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
