"""Self-describing checkpoints of segmentation networks (what ``convscope segment train`` writes).

Like the classifier checkpoints of :func:`convscope.models.save_checkpoint`: the weights in
safetensors at ``X.safetensors`` (no pickle) and a JSON description at ``X.json``, also stored
in the weights' header: format, architecture, backbone, class names, image size, and how images
and masks were fitted to that size (``preprocess``: squash or center-crop; squash when absent).
``segment predict|eval X.safetensors`` (or ``X.json``) need no other flag.

An FCN's backbone is written as the model spec it was trained on (``backbone``: the source;
``backbone_arch`` and ``backbone_input_size`` when the spec had them; its weights are in the
file). It is built only when source and builder are known names (embedded, ``torchvision:NAME``,
``timm:NAME``, ``small_cnn``); any other spec (a file, ``module:callable``) must come from the
caller (``backbone=``, CLI ``--backbone``) or be allowed with ``trust``, so that a file never
chooses code to import. The torch-pickle files of earlier versions are refused in one line.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import nn

from ..devices import resolve_device
from ..errors import ConvscopeError
from ..images import PREPROCESSING
from ..models import (
    BUILDERS,
    DEFAULT_MODEL,
    ModelSpec,
    RandomWeightsWarning,
    checkpoint_meta,
    fit_error,
    is_model_name,
    load_model,
    read_checkpoint,
    read_state_dict,
)

__all__ = ["ARCHITECTURES", "LoadedSegmenter", "load_segmenter", "save_segmenter", "SEGMENTER_FORMAT", "WITH_BACKBONE"]

SEGMENTER_FORMAT = "convscope-segmenter/1"
ARCHITECTURES = ("fcn32s", "fcn16s", "fcn8s", "unet", "segnet")
#: architectures built on a classifier backbone (the others train from scratch).
WITH_BACKBONE = ("fcn32s", "fcn16s", "fcn8s")


def save_segmenter(
    net: nn.Module,
    path: str | Path,
    arch: str,
    classes: Sequence[str],
    size: int,
    backbone: str | ModelSpec | None = None,
    preprocess: str = "squash",
) -> Path:
    """Write ``net`` as ``path`` with suffix ``.safetensors`` plus its ``.json`` description; returns the
    weights' path. ``backbone``: the model spec (or source) an FCN was built on; ``preprocess``: how
    the training images and masks were fitted to ``size``."""
    from safetensors.torch import save_file

    if arch not in ARCHITECTURES:
        raise ConvscopeError(f"unknown segmentation architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    if preprocess not in PREPROCESSING:
        raise ConvscopeError(f"unknown preprocessing {preprocess!r}; choose {' | '.join(PREPROCESSING)}")
    path = Path(path).with_suffix(".safetensors")
    meta = {
        "format": SEGMENTER_FORMAT,
        "weights": path.name,
        "arch": arch,
        **(_backbone_meta(backbone) if arch in WITH_BACKBONE else {"backbone": None}),
        "classes": list(classes),
        "size": int(size),
        "preprocess": preprocess,
    }
    text = json.dumps(meta, indent=1)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"convscope": text})
    path.with_suffix(".json").write_text(text + "\n")
    return path


def _backbone_meta(backbone: str | ModelSpec | None) -> dict:
    spec = backbone if isinstance(backbone, ModelSpec) else ModelSpec(backbone or DEFAULT_MODEL)
    meta: dict = {"backbone": spec.source}
    if spec.arch is not None:
        meta["backbone_arch"] = spec.arch
    if spec.input_size is not None:
        meta["backbone_input_size"] = spec.input_size
    return meta


def _known(name) -> bool:
    return is_model_name(name) or name in BUILDERS


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


class LoadedSegmenter(NamedTuple):
    """What :func:`load_segmenter` reads back: the network (eval mode), its classes, image side and
    the preprocessing its training data went through (score and predict with the same)."""

    net: nn.Module
    classes: tuple[str, ...]
    size: int
    preprocess: str


def load_segmenter(
    path: str | Path, device: str | torch.device = "cpu", backbone: str | None = None, trust: bool = False
) -> LoadedSegmenter:
    """The network in eval mode on ``device``, class names, image size and preprocessing of a
    :func:`save_segmenter` file.

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
    fitted = meta.get("preprocess", "squash")  # files written before it was recorded trained on squash
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) for c in classes)
        or not isinstance(size, int)
        or not 8 <= size <= 4096
    ):
        raise ConvscopeError(f"{path} is not a checkpoint written by 'convscope segment train' (bad classes or size)")
    if fitted not in PREPROCESSING:
        raise ConvscopeError(
            f"{path} names an unknown preprocessing {str(fitted)[:80]!r}; known: {', '.join(PREPROCESSING)}"
        )
    if arch not in ARCHITECTURES:
        raise ConvscopeError(
            f"{path} names an unknown architecture {str(arch)[:80]!r}; known: {', '.join(ARCHITECTURES)}"
        )
    built = None
    if arch in WITH_BACKBONE and backbone is None:
        named, builder = meta.get("backbone") or DEFAULT_MODEL, meta.get("backbone_arch")
        side = meta.get("backbone_input_size")
        side = tuple(side) if isinstance(side, list) else side
        if side is not None and not (
            isinstance(side, int) or (len(side) == 2 and all(isinstance(v, int) for v in side))
        ):
            raise ConvscopeError(f"{path}: backbone_input_size must be a side or [height, width]")
        if not isinstance(named, str) or not (
            trust or (_known(named) and (builder is None or (isinstance(builder, str) and _known(builder))))
        ):
            raise ConvscopeError(
                f"{path} names the backbone {str(named)[:80]!r}"
                + (f" built by {str(builder)[:80]!r}" if builder is not None else "")
                + ", which is not a known model name; pass --backbone SPEC yourself (or --trust if you trust the file's author)"
            )
        with warnings.catch_warnings():  # the backbone's weights are in the file
            warnings.simplefilter("ignore", RandomWeightsWarning)
            built = load_model(ModelSpec(named, arch=builder, input_size=side), trust=trust)
        backbone = named
    net = build_segmenter(arch, len(classes), built if built is not None else backbone or DEFAULT_MODEL)
    state = read_state_dict(weights)
    problem = fit_error(net, state, weights)
    if problem:
        raise ConvscopeError(f"{problem} ({arch} on {backbone})" if arch in WITH_BACKBONE else problem)
    net.load_state_dict(state, strict=False)
    return LoadedSegmenter(net.to(resolve_device(device)).eval(), tuple(classes), size, fitted)
