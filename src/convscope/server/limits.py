"""Request limits of the web app: a body-size cap (413) and a bounded wait for the model."""

from __future__ import annotations

__all__ = ["BodyLimit", "Busy", "ModelGate"]

import threading
import time
from contextlib import contextmanager


class BodyLimit:
    """ASGI middleware answering 413 to request bodies over ``max_bytes`` — from the
    ``Content-Length`` header up front, or counted while a chunked body streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        seen, started, refused = 0, False, False

        async def counted_receive():
            # over the limit: answer 413 now and tell the app the client went away
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if refused:
                return  # the 413 is already out; drop whatever the app answers
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, tracked_send)

    async def _refuse(self, send):
        body = f'{{"detail":"request body over the {self.max_bytes:,} byte limit"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"connection", b"close"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Busy(RuntimeError):
    """Too many requests are waiting for the model (answer 503 with Retry-After)."""


class ModelGate:
    """One computation at a time on the process's model copy (hooks are per module, so two
    threads must not run methods on one model at once), with at most ``max_waiting``
    requests waiting up to ``timeout`` seconds; the rest are refused with :class:`Busy`."""

    def __init__(self, max_waiting: int = 8, timeout: float = 60.0):
        self.lock = threading.Lock()
        self.max_waiting, self.timeout = max_waiting, timeout
        self._waiting = 0
        self._count = threading.Lock()

    @contextmanager
    def hold(self, ticket=None):
        """Hold the model; while waiting, a cancelled ``ticket`` (its client left) stops the wait."""
        with self._count:
            if self._waiting >= self.max_waiting:
                raise Busy(f"{self._waiting} requests are waiting for the model")
            self._waiting += 1
        try:
            deadline = time.monotonic() + self.timeout
            acquired = False
            while not acquired and time.monotonic() < deadline:
                acquired = self.lock.acquire(timeout=min(0.1, max(deadline - time.monotonic(), 0.0)))
                if not acquired and ticket is not None:
                    ticket.raise_if_stopped()
        finally:
            with self._count:
                self._waiting -= 1
        if not acquired:
            raise Busy(f"the model stayed busy for {self.timeout:g} s")
        try:
            yield
        finally:
            self.lock.release()
