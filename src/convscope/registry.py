"""A small named registry (timm's ``register_model`` + ``default_cfgs`` idea): one decorated
function per method, its metadata stored next to it.

Every family (attribution methods, attacks, corruptions, defenses, report sections, tour
steps, dissect engines) registers the same way::

    @METHODS.register(kind="cam", display="minmax")
    def gradcam(model, x, target=None, layer=None): ...

The CLI's ``--method`` choices and options, the report, the web app and the parametrized
tests read the registry (``names(kind="cam")``, ``meta("gradcam")``), so adding a method is
one decorated function in one file. Names are ``snake_case`` in every family; a
kebab-case spelling (``pgd-l2``) is accepted as an alias of the snake_case one.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from .errors import ConvscopeError

Entry = TypeVar("Entry", bound=Callable)
Function = TypeVar("Function", bound=Callable)  # the decorated function keeps its own signature

__all__ = ["Registry", "RegistryEntry", "import_submodules", "renamed_options", "unknown_options_message"]


@dataclass(frozen=True)
class RegistryEntry(Generic[Entry]):
    """One registered callable and its metadata (read-only)."""

    name: str
    function: Entry
    meta: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))


class Registry(Generic[Entry]):
    """Name -> callable + metadata, with a clear error (and the closest names) for unknown names.

    Args:
        kind: what an entry is, for error messages (``"attack"``).
        defaults: metadata every entry gets unless its ``register`` call says otherwise.
    """

    def __init__(self, kind: str, /, **defaults: Any):
        self.kind = kind
        self.defaults = dict(defaults)
        self._entries: dict[str, RegistryEntry[Entry]] = {}

    def register(self, name: str | None = None, /, **meta: Any) -> Callable[[Function], Function]:
        """Decorator: register the function under ``name`` (default: its ``__name__``) with ``meta``."""

        def add(entry: Function) -> Function:
            self.add(name or entry.__name__, entry, **meta)  # type: ignore[arg-type]
            return entry

        return add

    def add(self, name: str, entry: Entry, **meta: Any) -> None:
        """Register ``entry`` under ``name`` (the non-decorator form of :meth:`register`)."""
        if name != name.strip() or not name:
            raise ValueError(f"bad {self.kind} name {name!r}")
        name = name.replace("-", "_")  # one spelling in every family: snake_case
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = RegistryEntry(name, entry, MappingProxyType({**self.defaults, **meta}))

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name`` (``pgd-l2`` -> ``pgd_l2``); ConvscopeError if unknown."""
        if name in self._entries:
            return name
        snake = name.replace("-", "_")
        if snake in self._entries:
            return snake
        close = difflib.get_close_matches(snake, list(self._entries), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(self._entries)}"
        raise ConvscopeError(f"unknown {self.kind} {name!r}; {hint}")

    def get(self, name: str) -> Entry:
        """The callable registered as ``name``."""
        return self._entries[self.canonical(name)].function

    def entry(self, name: str) -> RegistryEntry[Entry]:
        """Name, callable and metadata of ``name``."""
        return self._entries[self.canonical(name)]

    def meta(self, name: str) -> MappingProxyType:
        """The metadata of ``name`` (read-only mapping; the family's defaults filled in)."""
        return self._entries[self.canonical(name)].meta

    def entries(self, **where: Any) -> list[RegistryEntry[Entry]]:
        """Every entry in registration order, optionally filtered as in :meth:`names`."""
        return [entry for entry in self._entries.values() if _matches(entry.meta, where)]

    def names(self, **where: Any) -> list[str]:
        """Registered names in registration order; ``names(kind="cam")`` keeps the entries whose
        metadata equals every given value (a callable value is used as a predicate)."""
        return [entry.name for entry in self.entries(**where)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name.replace("-", "_") in self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


def _matches(meta: MappingProxyType, where: dict[str, Any]) -> bool:
    for key, wanted in where.items():
        value = meta.get(key)
        if callable(wanted) and not isinstance(wanted, type):
            if not wanted(value):
                return False
        elif value != wanted:
            return False
    return True


def import_submodules(package: str, skip: Callable[[str], bool] = lambda name: name.startswith("_")) -> None:
    """Import every module of ``package`` (so each registers its entries; a new method is one
    new file). Names for which ``skip`` is true (default: private ``_modules``) are left out."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if not skip(info.name):
            importlib.import_module(f"{package}.{info.name}")


def unknown_options_message(what: str, unknown: list[str], accepted: list[str]) -> str:
    """One-line error for options a method does not take, with the closest accepted names."""
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return f"{what} has no option {', '.join(hints)}; it takes: {', '.join(accepted) or 'no options'}"


def renamed_options(**renamed: str) -> Callable[[Function], Function]:
    """Keep an option's old name working after a rename: ``@renamed_options(n="samples")`` maps
    ``n=`` to ``samples=`` with a ``DeprecationWarning``. The signature shows only the new names;
    the old ones are in the wrapper's ``__renamed__`` (``attribute()`` accepts them too)."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args, **options):
            for old, new in renamed.items():
                if old in options:
                    if new in options:
                        raise ConvscopeError(f"{function.__name__}: give {new}= only ({old}= is its old name)")
                    warnings.warn(f"{function.__name__}: option {old}= is now {new}=", DeprecationWarning, stacklevel=2)
                    options[new] = options.pop(old)
            return function(*args, **options)

        wrapper.__renamed__ = dict(renamed)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
