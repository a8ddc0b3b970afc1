"""The one progress bar of the package (rich, imported only when a bar is shown).

``with progress_bar(total, "mining", enabled) as advance: ... advance(n, note)``. Disabled (the
library's default, ``progress=False``), or without rich installed, it draws nothing and
imports nothing. Ctrl-C inside the block ends it cleanly with a warning: the long loops keep
their results outside the block, so they return what they computed so far.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

__all__ = ["progress_bar", "track"]


@contextlib.contextmanager
def progress_bar(
    total: int | None,
    description: str,
    enabled: bool = True,
    *,
    interrupted: str | None = "keeping the results so far",
    completed: int = 0,
    remaining: bool = False,
) -> Iterator[Callable[..., None]]:
    """A progress bar yielding ``advance(n=1, note=None)``.

    Args:
        total: number of steps (None: unknown).
        description: the bar's label.
        enabled: draw it (False: nothing is drawn and rich is not imported).
        interrupted: the end of the warning on Ctrl-C ("<description>: interrupted; ..."); None
            lets the KeyboardInterrupt through (a loop that cannot return partial results).
        completed: steps already done (a resumed run).
        remaining: show the estimated time remaining instead of the time elapsed.
    """
    bar = None
    if enabled:
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError:  # the API without the CLI extra: no bar
            pass
        else:
            clock = TimeRemainingColumn() if remaining else TimeElapsedColumn()
            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                clock,
                TextColumn("{task.fields[note]}"),
                transient=True,
            )
    with bar if bar is not None else contextlib.nullcontext():
        task = bar.add_task(description, total=total, completed=completed, note="") if bar is not None else None

        def advance(n: int = 1, note: str | None = None) -> None:
            if bar is not None:
                bar.update(task, advance=n, **({"note": note} if note is not None else {}))

        if interrupted is None:
            yield advance
            return
        try:
            yield advance
        except KeyboardInterrupt:
            warnings.warn(f"{description}: interrupted; {interrupted}", RuntimeWarning, stacklevel=3)


def track(items, description: str, enabled: bool = True, total: int | None = None):
    """Iterate over ``items`` with a :func:`progress_bar` (one step per item; Ctrl-C passes through)."""
    items = items if total is not None or hasattr(items, "__len__") else list(items)
    with progress_bar(len(items) if total is None else total, description, enabled, interrupted=None) as advance:
        for item in items:
            yield item
            advance()
