"""Guards of the web app: which hosts and origins may drive it, uploads read into memory, and
cancellation points inside every computation.

* :class:`LocalGuard` answers 400 to a ``Host`` header that is not one of the names the app is
  bound to (a page on another site that rebinds its DNS name to 127.0.0.1 sends its own name),
  and 403 to a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` (or, without
  one, ``Referer``) is another site: a cross-site form or fetch cannot upload, compute or
  cancel. Requests without either header (curl, scripts) are not cross-site and pass.
* :func:`read_multipart_file` parses a multipart upload in memory (Starlette's parser would
  spool a part over 1 MiB to a temporary file).
* :class:`Ticket` and :func:`cancellation_point`: a forward pre-hook on the model raises
  :class:`~convscope.server.jobs.JobCancelled` when the ticket is cancelled (client gone, job
  cancelled) or past its deadline, so every forward pass of every method is a point where a
  computation stops, without a callback in each method.
"""

from __future__ import annotations

__all__ = ["cancellation_point", "LocalGuard", "read_multipart_file", "Ticket"]

import contextlib
import threading
import time
from typing import Callable, Iterator, Sequence
from urllib.parse import urlsplit

from torch import nn

from .jobs import JobCancelled

_STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _host_name(netloc: str) -> str:
    """``host`` of ``host:port`` / ``[v6]:port``, lower case."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class LocalGuard:
    """ASGI middleware: ``Host`` must be one of ``allowed_hosts`` (400 otherwise); a state-changing
    request must come from the same origin as its ``Host`` (403 otherwise). ``"*"`` in
    ``allowed_hosts`` turns the Host check off (not the origin check)."""

    def __init__(self, app, allowed_hosts: Sequence[str]):
        self.app = app
        self.allowed = {_host_name(h) for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if "*" not in self.allowed and _host_name(host) not in self.allowed:
            return await _answer(
                send, 400, f"unknown Host {host[:80]!r}; this app answers to {', '.join(sorted(self.allowed))}"
            )
        if scope.get("method", "GET").upper() in _STATE_CHANGING:
            origin = headers.get("origin")
            source = origin if origin is not None else headers.get("referer")
            if source is not None and (source == "null" or urlsplit(source).netloc.lower() != host.lower()):
                return await _answer(send, 403, f"cross-origin request from {source[:80]!r} refused")
        return await self.app(scope, receive, send)


async def _answer(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_multipart_file(request, field: str = "file") -> bytes | None:
    """The bytes of the file part ``field`` of a multipart body, parsed in memory (the body is
    already capped by :class:`~convscope.server.limits.BodyLimit`); ``None`` when absent."""
    try:  # python-multipart, FastAPI's own parser (module renamed in 0.0.13)
        from python_multipart.multipart import MultipartParser, parse_options_header
    except ImportError:  # pragma: no cover
        from multipart.multipart import MultipartParser, parse_options_header

    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        return None
    body = await request.body()

    parts: dict[str, list[bytes]] = {}
    state: dict = {"name": None, "header": b"", "headers": {}}

    def on_part_begin():
        state["headers"], state["name"] = {}, None

    def on_header_field(data, start, end):
        state["header"] = data[start:end].lower()

    def on_header_value(data, start, end):
        state["headers"][state["header"]] = state["headers"].get(state["header"], b"") + data[start:end]

    def on_headers_finished():
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = disposition.get(b"name", b"").decode("latin-1")
        parts.setdefault(state["name"], [])

    def on_part_data(data, start, end):
        parts[state["name"]].append(data[start:end])

    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    parser.write(body)
    parser.finalize()
    return b"".join(parts[field]) if field in parts else None


class Ticket:
    """The cancel flag and deadline of one computation (a request or a job)."""

    def __init__(self, budget: float | None = None, check: Callable[[], None] | None = None):
        self.deadline: float | None = None
        self.budget, self.check = budget, check
        self._cancelled = threading.Event()
        self.reason = ""
        self.passes = 0

    def start(self) -> None:
        """The computation begins (it got the model): its time budget starts now."""
        if self.budget is not None:
            self.deadline = time.monotonic() + self.budget

    def cancel(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def raise_if_stopped(self) -> None:
        """Raise :class:`JobCancelled` when cancelled or past the deadline."""
        if self.check is not None:
            self.check()
        if self.deadline is not None and time.monotonic() > self.deadline and not self.cancelled:
            self.cancel(f"over the {self.budget:g} s time budget of a request")
        if self.cancelled:
            raise JobCancelled(self.reason)


@contextlib.contextmanager
def cancellation_point(model: nn.Module, ticket: Ticket) -> Iterator[Ticket]:
    """While the block runs, every forward pass of ``model`` first checks ``ticket`` (a forward
    pre-hook, first in line, removed on exit): a cancelled or late computation stops at its next
    pass. On an :class:`~convscope.models.ImageClassifier` the wrapped ``network`` gets the hook
    too, for the methods that run it directly (LRP) and the progress views of the jobs."""

    def hook(module, inputs):
        ticket.raise_if_stopped()
        if module is model:
            ticket.passes += 1

    modules = [model] + [m for m in (getattr(model, "network", None),) if isinstance(m, nn.Module)]
    handles = [m.register_forward_pre_hook(hook, prepend=True) for m in modules]
    try:
        yield ticket
    finally:
        for handle in handles:
            handle.remove()
