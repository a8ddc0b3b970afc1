"""The local web app (``convscope serve``): a FastAPI app and a plain static page.

The page in ``static/`` uses the same documented HTTP API (``/docs``, ``/openapi.json``)
that any client can call. See :func:`create_app`.
"""

from .app import create_app

__all__ = ["create_app"]
