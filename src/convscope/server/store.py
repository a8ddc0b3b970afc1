"""Bounded in-memory stores of the web app: uploaded images and computed results, both keyed
by content hash (so the same photo uploaded twice, or the same request asked twice, costs
one computation) and evicted least-recently-used so memory stays bounded."""

from __future__ import annotations

__all__ = ["IMAGE_ID", "ImageStore", "LRU", "release_memory", "request_key", "UploadRejected"]

import hashlib
import io
import json
import re
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConvscopeError
from ..images import SAMPLES, ImageTooLarge, open_checked, pil_to_tensor, resize

IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


def release_memory() -> bool:
    """Return freed heap pages to the OS after a large decode (glibc keeps them otherwise, and the
    process's resident memory stays at its peak); False (and nothing done) where ``malloc_trim`` does not exist."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)
    return bool(_TRIM)


_TRIM = None


class UploadRejected(ValueError):
    """An upload the app refuses, with the HTTP status to answer (413 too big, 415 not an image)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class LRU:
    """A thread-safe least-recently-used dict with at most ``capacity`` entries."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def request_key(**fields: Any) -> str:
    """The cache key of a request: SHA-256 of its fields (image hash, model, method, ...)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class ImageStore:
    """Uploaded photos by SHA-256 of their bytes (kept as uint8, at most ``max_side`` px),
    plus the bundled ``sample:NAME`` photos. Nothing is ever written to disk."""

    def __init__(
        self,
        capacity: int = 32,
        max_pixels: int = 40_000_000,
        max_side: int = 1024,
        decoders: int = 2,
        decode_wait: float = 30.0,
    ):
        self._images = LRU(capacity)
        self.max_pixels, self.max_side = max_pixels, max_side
        # at most ``decoders`` uploads decode at once: each may need max_pixels x 4 bytes for a moment
        self._decoding, self.decode_wait = threading.BoundedSemaphore(decoders), decode_wait

    def add(self, data: bytes) -> tuple[str, tuple[int, int]]:
        """Decode an upload; return its id and (width, height). Raises :class:`UploadRejected`.

        The header's size is checked before any pixel is decoded (413 over ``max_pixels`` or
        more elongated than 100:1); the picture is shrunk to ``max_side`` in 8 bits before it
        becomes a float tensor. Blocking: call it from a worker thread, not the event loop."""
        if not self._decoding.acquire(timeout=self.decode_wait):
            raise UploadRejected(503, "busy decoding other uploads; try again")
        try:
            with open_checked(io.BytesIO(data), "the upload", self.max_pixels) as image:
                size = image.size
                tensor = pil_to_tensor(self._shrunk(image))
        except ImageTooLarge as error:
            raise UploadRejected(413, str(error)) from None
        except (ConvscopeError, UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise UploadRejected(415, "the upload is not a readable image (PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
        finally:
            self._decoding.release()
            release_memory()
        scale = self.max_side / max(tensor.shape[-2:])
        if scale < 1:  # modes PIL cannot resize in 8 bits (16-bit, float)
            tensor = resize(
                tensor[None], (max(1, round(tensor.shape[-2] * scale)), max(1, round(tensor.shape[-1] * scale)))
            )[0]
        image_id = hashlib.sha256(data).hexdigest()
        self._images.put(image_id, (tensor.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
        return image_id, size

    def _shrunk(self, image: Image.Image) -> Image.Image:
        if image.mode == "P":
            image = image.convert("RGBA")
        if max(image.size) > self.max_side and image.mode in ("RGB", "RGBA", "L", "LA"):
            if image.format == "JPEG":
                image.draft(image.mode, (self.max_side, self.max_side))
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        else:
            image.load()
        return image

    def picture(self, image_id: str) -> np.ndarray | str | None:
        """What :func:`~convscope.images.load_image` reads for an id: the upload's HxWx3 uint8 array,
        the ``sample:NAME`` itself for a bundled photo; ``None`` when unknown. The app fits it to a
        model with :func:`~convscope.images.model_image`, as the CLI and the API do."""
        if image_id.startswith("sample:"):
            return image_id if image_id.split(":", 1)[1] in SAMPLES else None
        return self._images.get(image_id) if IMAGE_ID.match(image_id) else None

    def __len__(self) -> int:
        return len(self._images)
