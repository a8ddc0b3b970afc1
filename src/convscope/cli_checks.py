"""Command-line values checked once, at the boundary, before anything is computed.

Every number option of every command has a declared range here (``RANGES``, by option name,
with per-command overrides); every float must be finite; every output path must be writable
and carry a suffix its writer knows. :func:`harden` attaches the checks to the click commands
that typer builds, so a bad value is a usage error (exit 2, one line) before a model loads.
``tests/test_bad_input.py`` fails when a command gains a number option without a range here.
"""

from __future__ import annotations

__all__ = [
    "BUDGETS",
    "check_output",
    "COMMAND_OUTPUTS",
    "COMMAND_RANGES",
    "FRACTION",
    "harden",
    "harden_command",
    "image_suffixes",
    "NATURAL",
    "number_params",
    "output_kind",
    "OUTPUTS",
    "param_rule",
    "parse_eps",
    "parse_ids",
    "POSITIVE",
    "Range",
    "RANGES",
    "RATE",
    "SUFFIXES",
    "WEIGHT",
]

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConvscopeError


@dataclass(frozen=True)
class Range:
    """Allowed values of a number option: ``low <= v <= high`` (``<`` when ``open``); None = unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, value: float) -> str | None:
        """An error message, or None when ``value`` is allowed."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}, got {value:g}"
        return None


POSITIVE = Range(1)  # counts: sizes, steps, batch sizes, k, epochs, ...
NATURAL = Range(0)  # seeds, optional counts where 0 means "none"
WEIGHT = Range(0)  # loss weights
RATE = Range(0, low_open=True)  # learning rates, budgets in MB
FRACTION = Range(0, 1, low_open=True)  # eps in pixel units, probabilities

#: number options by parameter name (the python name typer derives from the option).
RANGES: dict[str, Range] = {
    "size": POSITIVE,
    "input_size": POSITIVE,
    "eval_size": POSITIVE,
    "final_eval_size": NATURAL,  # 0: all test images
    "patch_size": POSITIVE,
    "topk": POSITIVE,
    "k": POSITIVE,
    "batch_size": POSITIVE,
    "steps": POSITIVE,
    "samples": POSITIVE,
    "generations": POSITIVE,
    "popsize": Range(2),
    "epochs": POSITIVE,
    "count": POSITIVE,
    "octaves": POSITIVE,
    "eot": POSITIVE,
    "limit": POSITIVE,
    "runs": POSITIVE,
    "max_filters": POSITIVE,
    "severity": Range(1, 5),
    "seed": NATURAL,
    "make_samples": NATURAL,
    "port": Range(1, 65535),
    "workers": NATURAL,  # --workers 0: decode in-process
    "lr": RATE,
    "max_upload_mb": RATE,
    "max_pixels": POSITIVE,
    "threshold": FRACTION,
    "eps": Range(0, 1),
    "clean_error": Range(0, 1),
    "content_weight": WEIGHT,
    "style_weight": WEIGHT,
    "tv_weight": WEIGHT,
    "octave_scale": Range(1, low_open=True),
    "checkpoint_every": POSITIVE,
    "weight_decay": WEIGHT,
    "warmup": WEIGHT,  # epochs of learning-rate warm-up
    "trades_beta": WEIGHT,
    "momentum": Range(0, 1, high_open=True),
}
#: per-command overrides: (command path, parameter name) -> range.
COMMAND_RANGES: dict[tuple[str, str], Range] = {
    ("finetune", "lr"): Range(0),  # 0 = the mode's default learning rate
}

#: text options that hold a budget (``8/255``, ``0.03``): read with :func:`parse_eps` at the boundary.
BUDGETS = {"eps", "eps_text"}
#: output options by parameter name; their kind comes from the default's suffix unless given here.
OUTPUTS: dict[str, str | None] = {"out": None, "out_dir": "folder", "save_adversarial": "image", "save_array": "array"}
#: per-command output kinds: (command path, parameter name) -> kind.
COMMAND_OUTPUTS: dict[tuple[str, str], str] = {("explain", "out"): "image_or_folder"}  # a folder in dataset mode
SUFFIXES: dict[str, set[str]] = {
    "html": {".html", ".htm"},
    "array": {".npy", ".npz"},
    "checkpoint": {".safetensors"},  # convscope's checkpoints: safetensors weights + a JSON next to them
    "table": {".csv"},
}


def image_suffixes() -> set[str]:
    """File suffixes Pillow can write."""
    from PIL import Image

    Image.init()
    return {ext for ext, kind in Image.registered_extensions().items() if kind in Image.SAVE}


def output_kind(name: str, default) -> str | None:
    """``image``, ``html``, ``array``, ``checkpoint`` or ``folder`` for an output option; None if not one."""
    if name not in OUTPUTS:
        return None
    if OUTPUTS[name] is not None:
        return OUTPUTS[name]
    suffix = Path(str(default)).suffix.lower() if default else ""
    return {".html": "html", ".safetensors": "checkpoint", ".npy": "array", ".csv": "table", "": "folder"}.get(
        suffix, "image"
    )


def check_output(path: Path | str, kind: str = "image", what: str = "--out") -> Path:
    """Raise ConvscopeError unless ``path`` can be written as a ``kind`` output (nothing is created)."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if kind == "image_or_folder":
        kind = "image" if path.suffix else "folder"
    if kind == "folder":
        if path.exists() and not path.is_dir():
            raise ConvscopeError(f"{name} is a file, not a folder")
        folder = path
    else:
        known = image_suffixes() if kind == "image" else SUFFIXES[kind]
        if path.suffix.lower() not in known:
            shown = sorted(known) if len(known) < 6 else [".png", ".jpg", ".webp", ".tif", "..."]
            raise ConvscopeError(f"{name}: unknown suffix {path.suffix or '(none)'!r}; use {', '.join(shown)}")
        if path.is_dir():
            raise ConvscopeError(f"{name} is a folder; give a file name")
        folder = path.parent
    existing = folder
    while not existing.exists():
        if existing.is_symlink() or existing == existing.parent:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConvscopeError(f"{name}: {existing} is a file, not a folder")
    try:  # the real test: can a file be created there? (root passes os.access on read-only mounts)
        with tempfile.TemporaryFile(dir=existing if str(existing) else "."):
            pass
    except OSError as error:
        raise ConvscopeError(f"{name}: cannot write in {existing or '.'} ({error.strerror or error})") from None
    return path


def parse_eps(text: str | None, what: str = "--eps") -> float | None:
    """``"8/255"``, ``"0.03"`` or None -> a budget in pixel units, in [0, 1]."""
    if text is None:
        return None
    try:
        if "/" in text:
            top, bottom = text.split("/")
            value = float(top) / float(bottom)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise ConvscopeError(f"{what} must be a number or a fraction like 8/255, got {text!r}") from None
    problem = RANGES["eps"].check(value)
    if problem:
        raise ConvscopeError(f"{what} (pixel units, images in [0, 1]) {problem}")
    return value


def parse_ids(text: str, what: str) -> list[int]:
    """``"7"``, ``"0,3,9"``, ``"0-7"`` or ``"0-15,32"`` -> non-negative ids (ranges ascending)."""
    found: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise ConvscopeError(f"{what} takes ids like 7, 0,3,9 or 0-7; got {text!r}") from None
        if first < 0 or last < first:
            raise ConvscopeError(f"{what}: {part!r} is not an ascending range of ids >= 0 (e.g. 0-7)")
        found += range(first, last + 1)
    if not found:
        raise ConvscopeError(f"{what}: no ids in {text!r}")
    return found


def param_rule(command: str, param) -> Range | str | None:
    """The check of one click parameter: a Range, an output kind, ``"budget"``, or None."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    kind = COMMAND_OUTPUTS.get((command, param.name)) or output_kind(param.name, param.default)
    if kind is not None:
        return kind
    base = _number_type(annotation)
    if base is None:
        return "budget" if param.name in BUDGETS else None
    return COMMAND_RANGES.get((command, param.name)) or RANGES.get(param.name)


def number_params(commands: dict):
    """(command path, click parameter, int | float) for every number option of ``commands`` (``cli.all_commands()``)."""
    for path, command in commands.items():
        for param in command.params:
            base = _number_type(getattr(getattr(param, "type_descriptor", None), "annotation", None))
            if base is not None:
                yield path, param, base


def _number_type(annotation):
    import typing

    if annotation in (int, float):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and args[0] in (int, float) and typing.get_origin(annotation) is not list:
        return args[0]
    return None


def harden(group):
    """Attach the range and output checks to every command already in ``group`` (deferred
    feature commands get them from :func:`harden_command` when they load)."""
    for name, command in group.commands.items():
        harden_command(name, command)
    _check_params("", group)  # the global options (--max-pixels)
    return group


def harden_command(path: str, command):
    """Attach the checks to one click command (or every command of a sub-group); return it."""

    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            harden_command(f"{path} {name}", sub)
        return command
    _check_params(path, command)
    return command


def _check_params(path: str, command) -> None:
    import typer

    for param in command.params:
        rule = param_rule(path, param)
        if rule is None and _number_type(getattr(getattr(param, "type_descriptor", None), "annotation", None)) is float:
            rule = Range()  # any finite float
        if rule is not None and not getattr(param.callback, "convscope_checked", False):
            param.callback = _checker(rule, param.callback, typer.BadParameter)


def _checker(rule, previous, bad):
    def check(ctx, param, value):
        if previous is not None:
            value = previous(ctx, param, value)
        if value is None or getattr(ctx, "resilient_parsing", False):
            return value
        if isinstance(rule, Range):
            problem = rule.check(value)
            if problem:
                raise bad(problem, ctx=ctx, param=param)
        elif rule == "budget":
            try:
                parse_eps(value, "")
            except ConvscopeError as error:
                raise bad(str(error).strip(), ctx=ctx, param=param) from None
        else:
            try:
                check_output(value, rule, what="")
            except ConvscopeError as error:
                raise bad(str(error), ctx=ctx, param=param) from None
        return value

    check.convscope_checked = True
    return check
