"""A small named registry (timm's ``register_model`` idea): one decorated function per method.

The CLI's ``--method`` choices, the report and the web app all read the same registry,
so adding a method is one decorated function in one file.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConvscopeError

Entry = TypeVar("Entry", bound=Callable)


class Registry(Generic[Entry]):
    """Name -> callable, with a clear error (and the closest names) for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None) -> Callable[[Entry], Entry]:
        def add(entry: Entry) -> Entry:
            key = name or entry.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = entry
            return entry

        return add

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(self._entries)}"
            raise ConvscopeError(f"unknown {self.kind} {name!r}; {hint}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
