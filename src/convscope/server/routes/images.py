"""Uploads: kept in memory under the SHA-256 of their bytes, never written to disk."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.requests import ClientDisconnect

from ..guards import read_multipart_file
from ..served import Served, served
from ..store import UploadRejected

__all__ = ["router"]

router = APIRouter()

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


@router.post("/api/images", status_code=201, openapi_extra=_UPLOAD_SCHEMA)
async def upload(http: Request, state: Annotated[Served, Depends(served)]) -> dict:
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
        image_id, (width, height) = await anyio.to_thread.run_sync(state.images.add, data)
    except UploadRejected as error:
        raise HTTPException(error.status, str(error)) from None
    return {"id": image_id, "width": width, "height": height, "bytes": len(data)}
