"""``convscope serve``: the local web app (FastAPI + uvicorn)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from ..cli_common import ModelArgs, console, err_console, model_options
from ..errors import ConvscopeError


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @model_options
    def serve_command(
        host: Annotated[str, typer.Option("--host", help="address to bind; other than 127.0.0.1 exposes the app to your network")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port")] = 8000,
        model: ModelArgs = None,
        max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="largest accepted upload")] = 8.0,
    ) -> None:
        """A local web app: upload or pick a photo, see predictions, attributions, attacks, layers and long jobs."""
        import uvicorn

        from ..server import create_app

        if not 0 < port < 65536:
            raise ConvscopeError(f"port must be in 1..65535, got {port}")
        if not is_loopback(host):
            err_console.print(f"[yellow]warning:[/yellow] binding {host}: anyone who can reach this machine can use the app")
        network = model.open()
        web_app = create_app({model.name: network}, max_upload_bytes=int(max_upload_mb * 2**20))
        console.print(f"convscope at http://{host}:{port}/ (API docs at /docs); Ctrl-C stops")
        uvicorn.run(web_app, host=host, port=port, log_level="warning")
