"""The robustness package's progress bar: :func:`convscope.progress.progress_bar` (one bar for the
whole package), re-exported under its former name."""

from __future__ import annotations

from ..progress import progress_bar

__all__ = ["progress_bar"]
