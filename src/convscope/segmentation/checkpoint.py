"""Self-describing checkpoints of segmentation networks (what ``convscope segment train`` writes).

Like the classifier checkpoints of :func:`convscope.models.save_checkpoint`: the weights in
safetensors at ``X.safetensors`` (no pickle) and a JSON description at ``X.json``, also stored
in the weights' header: format, architecture, backbone, class names, image size.
``segment predict|eval X.safetensors`` (or ``X.json``) need no other flag.

The backbone named in a file is built only when it is a known model name (embedded,
``torchvision:NAME``, ``timm:NAME``); any other spec (a file, ``module:callable``) must come
from the caller (``backbone=``, CLI ``--backbone``) or be allowed with ``trust``, so that a file
never chooses code to import. The torch-pickle files of earlier versions are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..devices import resolve_device
from ..errors import ConvscopeError
from ..models import DEFAULT_MODEL, checkpoint_meta, fit_error, is_model_name, read_checkpoint, read_state_dict

__all__ = ["ARCHITECTURES", "load_segmenter", "save_segmenter", "SEGMENTER_FORMAT", "WITH_BACKBONE"]

SEGMENTER_FORMAT = "convscope-segmenter/1"
ARCHITECTURES = ("fcn32s", "fcn16s", "fcn8s", "unet", "segnet")
#: architectures built on a classifier backbone (the others train from scratch).
WITH_BACKBONE = ("fcn32s", "fcn16s", "fcn8s")


def save_segmenter(
    net: nn.Module, path: str | Path, arch: str, classes: Sequence[str], size: int, backbone: str | None = None
) -> Path:
    """Write ``net`` as ``path`` with suffix ``.safetensors`` plus its ``.json`` description; returns the weights' path."""
    from safetensors.torch import save_file

    if arch not in ARCHITECTURES:
        raise ConvscopeError(f"unknown segmentation architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    path = Path(path).with_suffix(".safetensors")
    meta = {
        "format": SEGMENTER_FORMAT,
        "weights": path.name,
        "arch": arch,
        "backbone": backbone if arch in WITH_BACKBONE else None,
        "classes": list(classes),
        "size": int(size),
    }
    text = json.dumps(meta, indent=1)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"convscope": text})
    path.with_suffix(".json").write_text(text + "\n")
    return path


def _not_ours(path: Path) -> ConvscopeError:
    """The one line for a file that is not a segmenter checkpoint (an old torch pickle is named as such)."""
    if path.is_file() and path.suffix not in (".json", ".safetensors"):
        saved = read_checkpoint(path)  # weights_only: refuses pickled objects in one line
        if isinstance(saved, dict) and "state_dict" in saved and "arch" in saved:
            return ConvscopeError(
                f"{path} is a torch.save checkpoint of an earlier 'segment train'; this version reads only "
                "safetensors + JSON checkpoints: train it again (segment train -o NAME.safetensors)"
            )
    if not path.exists():
        return ConvscopeError(f"no such file: {path}")
    return ConvscopeError(f"{path} is not a checkpoint written by 'convscope segment train'")


def load_segmenter(
    path: str | Path, device: str | torch.device = "cpu", backbone: str | None = None, trust: bool = False
) -> tuple[nn.Module, tuple[str, ...], int]:
    """(network in eval mode on ``device``, class names, image size) of a :func:`save_segmenter` file.

    ``backbone``: the FCN backbone's model spec when the file names one that is not a known model
    name (or pass ``trust=True`` to use the file's).
    """
    from . import build_segmenter

    path = Path(path)
    found = checkpoint_meta(path, (SEGMENTER_FORMAT,))
    if found is None:
        raise _not_ours(path)
    meta, weights = found
    classes, size, arch = meta.get("classes"), meta.get("size"), meta.get("arch")
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) for c in classes)
        or not isinstance(size, int)
        or not 8 <= size <= 4096
    ):
        raise ConvscopeError(f"{path} is not a checkpoint written by 'convscope segment train' (bad classes or size)")
    if arch not in ARCHITECTURES:
        raise ConvscopeError(
            f"{path} names an unknown architecture {str(arch)[:80]!r}; known: {', '.join(ARCHITECTURES)}"
        )
    if arch in WITH_BACKBONE and backbone is None:
        named = meta.get("backbone") or DEFAULT_MODEL
        if not isinstance(named, str) or not (is_model_name(named) or trust):
            raise ConvscopeError(
                f"{path} names the backbone {str(named)[:80]!r}, which is not a known model name; "
                "pass --backbone SPEC yourself (or --trust if you trust the file's author)"
            )
        backbone = named
    net = build_segmenter(arch, len(classes), backbone or DEFAULT_MODEL)
    state = read_state_dict(weights)
    problem = fit_error(net, state, weights)
    if problem:
        raise ConvscopeError(f"{problem} ({arch} on {backbone})" if arch in WITH_BACKBONE else problem)
    net.load_state_dict(state, strict=False)
    return net.to(resolve_device(device)).eval(), tuple(classes), size
