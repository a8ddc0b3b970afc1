"""The timing helper every benchmark shares, and where they save their results.

``repeat(function, repeats, reduce="min")`` times one function; ``interleaved(functions, rounds,
reduce="min")`` times several in turn each round (so drifting machine load hits all alike);
``save_results(name, rows, **settings)`` writes ``benchmarks/results/<name>-<date>.json`` with the
machine's threads, CPU count and load average next to the numbers (the dated record that used to
be a README diary).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "median": statistics.median,
    "mean": statistics.fmean,
}


def repeat(function: Callable[[], object], repeats: int = 3, reduce: str = "min", warmup: bool = False) -> float:
    """Seconds of one call of ``function``: the ``reduce`` (min | median | mean) of ``repeats`` calls."""
    if warmup:
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return REDUCERS[reduce](times)


def interleaved(
    functions: dict[str, Callable[[], object]],
    rounds: int = 3,
    reduce: str = "min",
    warmup: bool = True,
    keep_going: bool = False,
) -> dict[str, float]:
    """Seconds per call of each function, running them in turn in every round. With
    ``keep_going`` a function that raises is reported (printed) and left out instead of stopping."""
    if warmup:
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    failed: set[str] = set()
    for _ in range(rounds):
        for name, function in functions.items():
            if name in failed:
                continue
            start = time.perf_counter()
            try:
                function()
            except Exception as error:
                if not keep_going:
                    raise
                print(f"{name} could not run: {type(error).__name__}: {error}")
                failed.add(name)
                continue
            times[name].append(time.perf_counter() - start)
    return {name: REDUCERS[reduce](values) for name, values in times.items() if name not in failed and values}


def machine() -> dict:
    """What the numbers depend on: threads, cores, load, versions."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": list(load),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def save_results(name: str, rows: list[dict] | dict, folder: Path = RESULTS, **settings) -> Path:
    """Write ``rows`` (and ``settings``) to ``<folder>/<name>-<YYYY-MM-DD>.json``; returns the path."""
    now = datetime.datetime.now(datetime.timezone.utc)
    path = Path(folder) / f"{name}-{now:%Y-%m-%d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "created": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "settings": settings,
        "results": rows,
    }
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def rounds(functions: dict[str, Callable[[], object]], count: int = 5) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of every call of each function, run in turn in each of ``count`` rounds
    after one warm-up each. The process's CPU time is what the loaded 2-core machine does not
    inflate with waiting for a core (with 1 torch thread, the work done)."""
    for function in functions.values():
        function()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
    for _ in range(count):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def ratio_spread(times: dict[str, list[tuple[float, float]]], name: str, base: str, per: float = 1.0) -> dict:
    """Median and (min, max) over rounds of ``name / (per * base)``, in wall and in CPU time."""
    summary = {}
    for index, kind in enumerate(("wall", "cpu")):
        ratios = sorted(a[index] / (per * b[index]) for a, b in zip(times[name], times[base]))
        summary[kind] = {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}
    return summary
