"""``convscope serve``: the local web app (FastAPI + uvicorn)."""

from __future__ import annotations

__all__ = ["allowed_hosts", "app", "is_loopback", "serve_command"]

import ipaddress
from typing import Annotated, Optional

import typer

from .common import ModelArgs, console, err_console, model_options
from ..errors import ConvscopeError

app = typer.Typer()


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """The ``Host`` names the app answers: loopback names, the bound address, the ones given; for
    a wildcard bind (0.0.0.0, ::) also this machine's host name."""
    import socket

    names = ["127.0.0.1", "localhost", "::1", host, *extra]
    if host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    return list(dict.fromkeys(n for n in names if n))


@app.command("serve")
@model_options
def serve_command(
    host: Annotated[
        str, typer.Option("--host", help="address to bind; other than 127.0.0.1 exposes the app to your network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 8000,
    model: ModelArgs = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="largest accepted upload")] = 8.0,
    allow_host: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow-host", help="another Host name the app answers to (e.g. this machine's DNS name); repeatable"
        ),
    ] = None,
    max_pixels: Annotated[
        Optional[int],
        typer.Option("--max-pixels", help="largest decoded upload (width x height) [default: convscope's limit]"),
    ] = None,
) -> None:
    """A local web app: upload or pick a photo, see predictions, attributions, attacks, layers and long jobs."""
    from ..images import max_pixels as pixel_limit

    import uvicorn

    from ..server import create_app

    if not 0 < port < 65536:
        raise ConvscopeError(f"port must be in 1..65535, got {port}")
    if not is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/yellow] binding {host}: anyone who can reach this machine can use the app"
        )
    network = model.open()
    web_app = create_app(
        {model.name: network},
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_pixels=max_pixels or pixel_limit(),
        allowed_hosts=allowed_hosts(host, allow_host or []),
    )
    console.print(f"convscope at http://{host}:{port}/ (API docs at /docs); Ctrl-C stops")
    uvicorn.run(web_app, host=host, port=port, log_level="warning")
