"""Answered while the client waits, one at a time under the model gate, cached: the layer
table, predictions, attribution maps and attacks."""

from __future__ import annotations

from typing import Annotated

import torch
from fastapi import APIRouter, Depends, HTTPException, Request

from ...layers import layer_names, layer_table
from ...models import ImageClassifier
from ...targets import class_name
from .. import features
from ..schemas import AttackRequest, ExplainRequest, PredictRequest
from ..served import Served, data_uri, ranked, served
from ..store import request_key

__all__ = ["router"]

router = APIRouter()
State = Annotated[Served, Depends(served)]


@router.get("/api/layers")
def layers(state: State, model: str | None = None) -> dict:
    network = state.model_named(model)
    model = model or state.allowed[0]
    key = request_key(kind="layers", model=model)
    if (hit := state.cache.get(key)) is None:
        with state.gate.hold():
            hit = {
                "model": model,
                "input_size": network.input_size,
                "preprocess": network.preprocess,
                "layers": [_layer_row(row) for row in layer_table(network, network.input_size)],
            }
        state.cache.put(key, hit)
    return hit


@router.post("/api/predict")
async def predict_endpoint(request: PredictRequest, http: Request, state: State) -> dict:
    return await state.computed(
        http, "predict", request, lambda model, x: {"predictions": ranked(model, x, request.topk)}
    )


@router.post("/api/explain")
async def explain(request: ExplainRequest, http: Request, state: State) -> dict:
    if request.method not in features.attribution_methods():
        raise HTTPException(
            404,
            f"unknown method {request.method!r}; available: "
            f"{', '.join(features.attribution_methods()) or 'none installed'}",
        )

    def work(model: ImageClassifier, x: torch.Tensor) -> dict:
        if request.layer is not None and request.layer not in layer_names(model):
            raise HTTPException(404, f"unknown layer {request.layer!r}; see GET /api/layers")
        top = ranked(model, x, 5)
        target = request.target if request.target is not None else top[0]["class_id"]
        picture, layer = features.explain(model, x, request.method, target, request.layer)
        return {
            "overlay": data_uri(picture),
            "target": {"class_id": target, "label": class_name(model.labels, target)},
            "layer": layer,
            "method": request.method,
            "predictions": top,
        }

    return await state.computed(http, "explain", request, work)


@router.post("/api/attack")
async def attack(request: AttackRequest, http: Request, state: State) -> dict:
    if request.method not in features.attack_methods():
        raise HTTPException(
            404,
            f"unknown attack {request.method!r}; available: {', '.join(features.attack_methods()) or 'none installed'}",
        )
    return await state.computed(
        http, "attack", request, lambda model, x: features.attack(model, x, request.method, request.eps, data_uri)
    )


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
