"""One progress bar for the long loops of the robustness package (training, evaluation)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A rich progress bar yielding ``advance(n=1, note="")``.

    Ctrl-C ends the block cleanly with a warning; the caller keeps what it has computed so
    far (the loops store their results outside the block).
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[note]}"))
    with Progress(*columns, disable=not enabled, transient=True) as bar:
        task = bar.add_task(description, total=total, note="")

        def advance(n: int = 1, note: str | None = None) -> None:
            bar.update(task, advance=n, **({"note": note} if note is not None else {}))

        try:
            yield advance
        except KeyboardInterrupt:
            warnings.warn(f"{description}: interrupted; keeping the results so far", RuntimeWarning, stacklevel=3)
