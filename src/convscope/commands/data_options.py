"""The dataset options shared by the dataset-level CLI commands (one definition, one meaning)."""

from __future__ import annotations

__all__ = [
    "AddressOption",
    "check_engine",
    "DataArgument",
    "DataLabelsOption",
    "EngineOption",
    "LabelsOption",
    "PreprocessOption",
    "ResumeOption",
    "StrictOption",
    "WorkersOption",
]

from pathlib import Path
from typing import Annotated, Optional

import typer

DataArgument = Annotated[
    str,
    typer.Argument(
        help="dataset: a folder (class subfolders by id, name or WordNet ID; flat + LOC_val_solution.csv; ImageNet-C tree; "
        "CIFAR-10-C .npy), samples:imagenet|cifar10|cifar100|mnist|fashion-mnist (real, labelled), photos, "
        "or cifar10:ROOT, mnist:ROOT, svhn:ROOT, imagenet:ROOT"
    ),
]
LabelsOption = Annotated[
    Optional[Path], typer.Option("--labels", help="labels of a flat folder: LOC_val_solution.csv or 'file label' lines")
]
#: the same, in commands that also take a model (there ``--labels`` names the model's classes).
DataLabelsOption = Annotated[
    Optional[Path],
    typer.Option("--data-labels", help="labels of a flat dataset folder: LOC_val_solution.csv or 'file label' lines"),
]
PreprocessOption = Annotated[
    str, typer.Option("--preprocess", help="crop (shorter side to size/0.875, centre crop) | resize | none")
]
StrictOption = Annotated[
    bool, typer.Option("--strict", help="stop at the first unreadable file (default: skip, name and count them)")
]
ResumeOption = Annotated[
    Optional[Path],
    typer.Option(
        "--resume", help="folder for per-shard partial results: the same command continues an interrupted run"
    ),
]
EngineOption = Annotated[
    str, typer.Option("--engine", help="local | ray (a Ray actor pool, kept between calls; GPUs when present)")
]
AddressOption = Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: a local Ray)")]
WorkersOption = Annotated[
    Optional[int],
    typer.Option(
        "--workers", help="loader worker processes (default: min(4, CPUs - 1); 0 for a CPU model on <= 2 cores)"
    ),
]


def check_engine(engine: str) -> str:
    from ..errors import ConvscopeError

    if engine not in ("local", "ray"):
        raise ConvscopeError(f"unknown --engine {engine!r}; known: local, ray")
    return engine
