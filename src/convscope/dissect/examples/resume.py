"""Saving and resuming a mining pass: the safetensors format of a :class:`TopExamples` (data
only, no pickle: reading it runs no code), the fingerprint that recognises the same data, layers
and k, atomic checkpoints, and :func:`load_examples`."""

from __future__ import annotations

__all__ = [
    "data_fingerprint",
    "load_examples",
    "read_saved",
    "resume",
    "save_checkpoint",
    "state_bytes",
    "state_from_bytes",
]

import hashlib
import json
import warnings
from pathlib import Path
from typing import Sequence

from ...errors import ConvscopeError
from ...layers import ReceptiveField
from .sources import ImageSource
from .types import TopExamples


def data_fingerprint(
    layers: Sequence[str], k: int, size: int, sources: list[str] | None, total: int, preprocess: str
) -> str:
    text = repr((list(layers), k, size, sources, total) + (() if preprocess == "resize" else (preprocess,)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(result: TopExamples, path: str | Path, fingerprint: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(state_bytes(result.state(), fingerprint))
    temporary.replace(path)  # atomic: an interrupt never leaves a half-written checkpoint


_TENSOR_FIELDS = ("values", "indices", "positions", "max_sum", "mean_sum", "active")


def state_bytes(state: dict, fingerprint: str = "") -> bytes:
    """A :meth:`TopExamples.state` as safetensors bytes: the tensors, and the rest as JSON in the
    header's metadata. The format holds data only (no pickle), so reading it runs no code."""
    from safetensors.torch import save

    tensors, layers = {}, []
    for i, (name, fields) in enumerate(state["layers"].items()):
        for key in _TENSOR_FIELDS:
            tensors[f"{i}.{key}"] = fields[key].contiguous()
        field_ = fields["field"]
        layers.append(
            {
                "name": name,
                "map_size": list(fields["map_size"]),
                "field": [None if field_.size is None else list(field_.size), list(field_.jump), list(field_.start)],
            }
        )
    meta = {key: state[key] for key in ("k", "size", "seen", "total", "complete", "sources")}
    meta.update(spec=state.get("spec"), preprocess=state.get("preprocess", "resize"))
    header = {"format": _FORMAT, "fingerprint": fingerprint, "layers": layers, **meta}
    return save(tensors, metadata={"convscope": json.dumps(header)})


_FORMAT = "convscope-examples-1"


def state_from_bytes(data: bytes, where: str = "the examples file") -> tuple[dict, str]:
    """Inverse of :func:`state_bytes`: ``(state, fingerprint)``; anything else is refused with a
    :class:`ConvscopeError` (pickled checkpoints of older versions included: they could run code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    refuse = (
        f"{where} is not a convscope examples file (safetensors written by top_k_examples); "
        "pickled checkpoints are refused because loading them could run code"
    )
    try:
        tensors = load(data)
        meta = json.loads(_metadata(data).get("convscope", "null"))
    except (SafetensorError, ValueError, KeyError, TypeError, OSError, UnicodeDecodeError):
        raise ConvscopeError(refuse) from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ConvscopeError(refuse)
    try:
        layers = {}
        for i, layer in enumerate(meta["layers"]):
            size, jump, start = layer["field"]
            fields = {key: tensors[f"{i}.{key}"] for key in _TENSOR_FIELDS}
            fields["field"] = ReceptiveField(
                None if size is None else (float(size[0]), float(size[1])),
                (float(jump[0]), float(jump[1])),
                (float(start[0]), float(start[1])),
            )
            fields["map_size"] = (int(layer["map_size"][0]), int(layer["map_size"][1]))
            layers[str(layer["name"])] = fields
        sources = meta["sources"]
        if sources is not None and not all(isinstance(s, str) for s in sources):
            raise TypeError
        spec, preprocess = meta.get("spec"), meta.get("preprocess", "resize")
        if not (spec is None or isinstance(spec, str)) or preprocess not in ("resize", "crop", "none"):
            raise TypeError
        state = {
            "k": int(meta["k"]),
            "size": int(meta["size"]),
            "seen": int(meta["seen"]),
            "total": None if meta["total"] is None else int(meta["total"]),
            "complete": bool(meta["complete"]),
            "sources": sources,
            "spec": spec,
            "preprocess": preprocess,
            "layers": layers,
        }
    except (KeyError, TypeError, ValueError, IndexError):
        raise ConvscopeError(f"{where} is damaged (its header does not match its tensors)") from None
    return state, str(meta.get("fingerprint", ""))


def _metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors buffer (read from its JSON header, no tensors)."""
    import struct

    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError("truncated")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}


def read_saved(path: Path) -> tuple[dict, str]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConvscopeError(f"cannot read {path}: {error.strerror or error}") from None
    return state_from_bytes(data, str(path))


def resume(path: str | Path, fingerprint: str) -> TopExamples | None:
    path = Path(path)
    if not path.is_file():
        return None
    state, saved = read_saved(path)
    if saved != fingerprint:
        warnings.warn(f"{path} was made for other data, layers or k; starting afresh", stacklevel=3)
        return None
    return TopExamples.from_state(state)


def load_examples(path: str | Path, data=None) -> TopExamples:
    """Read a saved result (a checkpoint of :func:`top_k_examples`); ``data`` re-attaches the
    images when they were not files or a dataset spec. Only the safetensors format is read (it cannot hold code)."""
    path = Path(path)
    if not path.is_file():
        raise ConvscopeError(f"no such examples file: {path}")
    result = TopExamples.from_state(read_saved(path)[0])
    if data is None and result.spec is not None:  # the same images, opened the same way
        result._images = ImageSource(result.spec, result.size, preprocess=result.preprocess)
    elif data is not None or result.sources:
        result._images = ImageSource(data if data is not None else result.sources, result.size)
    return result
