"""The registry of mining engines (``local``, ``ray``), apart from the engines themselves so
that :mod:`convscope.dissect.examples.mining` can look an engine up without importing
:mod:`convscope.dissect.engines` (which builds on the example types): no import cycle.
The package imports the engines module, so both are registered whenever ``convscope.dissect`` is."""

from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry

ENGINES: Registry[Callable] = Registry("engine")

__all__ = ["ENGINES", "get_engine"]


def get_engine(name: str) -> Callable:
    """The engine called ``name`` (``local`` or ``ray``)."""
    return ENGINES.get(name)
