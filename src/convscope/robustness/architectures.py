"""The network ``convscope train --arch`` trains: any architecture by name, sized for the data's classes.

``--arch`` takes ``small_cnn``, ``resnet_cifar`` (PreAct-ResNet), ``wide_resnet_cifar`` (WRN),
``torchvision:NAME``, ``timm:NAME``, an embedded model (``efficientnet_lite0``, ...) or the user's own
``package.module:callable``; ``options`` are keyword arguments of the builder (``depth=10,width=8``).
The classifier gets ``num_classes`` outputs: passed to the builder where it takes them, else its
last linear layer is replaced. ``pretrained`` starts from weights that are already on this
machine (torch hub's cache for torchvision, the Hugging Face cache for timm, the embedded
packages); nothing is ever downloaded. Networks trained from scratch take [0, 1] input as they
are (no normalisation, as the adversarial-training papers); pretrained ones keep their mean/std.

The result is an :class:`~convscope.models.ImageClassifier` that knows how it was built, so
:func:`convscope.models.save_checkpoint` writes a checkpoint ``-m`` reads back.
"""

from __future__ import annotations

__all__ = ["ARCHITECTURES", "parse_options", "training_classifier"]

import inspect
from pathlib import Path

from torch import nn

from ..errors import ConvscopeError
from ..models import EMBEDDED, IMAGENET_MEAN, IMAGENET_STD, ImageClassifier, _build, load_weights, set_head


#: architectures known by name (besides torchvision:, timm:, module:callable and the embedded models).
ARCHITECTURES = ("small_cnn", "resnet_cifar", "wide_resnet_cifar")


def parse_options(text: str | None) -> dict:
    """``"depth=10,width=8,name=x"`` -> ``{"depth": 10, "width": 8, "name": "x"}`` (ints, floats, booleans, strings)."""
    options: dict = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConvscopeError(f"architecture options are name=value pairs separated by commas, got {item!r}")
        value = value.strip()
        for kind in (int, float):
            try:
                options[key.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key.strip()] = {"true": True, "false": False}.get(value.lower(), value)
    return options


def training_classifier(
    arch: str,
    num_classes: int,
    size: int,
    *,
    options: dict | None = None,
    pretrained: bool = False,
    labels: list[str] | None = None,
) -> ImageClassifier:
    """A freshly built (or offline-pretrained) classifier for ``num_classes`` classes at ``size`` px.

    >>> model = training_classifier("resnet_cifar", 10, 32, options={"depth": 10, "width": 8})
    """
    if num_classes < 2:
        raise ConvscopeError(f"training needs at least two classes, got {num_classes}")
    options = dict(options or {})
    mean, std, head = (0.0,) * 3, (1.0,) * 3, None
    if pretrained:
        network, mean, std = _pretrained(arch, options)
        if _outputs(network) != num_classes:
            layer = set_head(network, num_classes)
            head = {"layer": layer, "in_features": _linear(network, layer).in_features, "out_features": num_classes}
        kwargs = options
    else:
        kwargs = {"num_classes": num_classes, **options}
        if arch == "small_cnn":
            kwargs.setdefault("size", size)
        if arch in EMBEDDED or (":" in arch and not arch.startswith(("torchvision:", "timm:"))):
            if not _takes(arch, "num_classes"):
                kwargs = options
        network = _build(arch, kwargs, allow_import=True, where="--arch")
        if not isinstance(network, nn.Module):
            raise ConvscopeError(f"{arch} built a {type(network).__name__}, not a torch.nn.Module")
        if _outputs(network) != num_classes:
            layer = set_head(network, num_classes)
            head = {"layer": layer, "in_features": _linear(network, layer).in_features, "out_features": num_classes}
    model = ImageClassifier(
        network,
        mean,
        std,
        labels,
        f"{arch} ({'pretrained' if pretrained else 'scratch'})",
        size,
        fixed_size=arch == "small_cnn",
        preprocess="squash",
    )
    model.arch, model.arch_kwargs, model.head_spec = arch, kwargs, head
    return model


def _takes(arch: str, name: str) -> bool:
    """Whether the builder of ``arch`` (an embedded name or module:callable) accepts keyword ``name``."""
    if arch in EMBEDDED:
        return True  # timm's create_model takes num_classes
    from ..models import _builder

    try:
        parameters = inspect.signature(_builder(arch)).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _outputs(network: nn.Module) -> int | None:
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def _linear(network: nn.Module, layer: str) -> nn.Linear:
    module = network.get_submodule(layer)
    assert isinstance(module, nn.Linear)
    return module


def _pretrained(arch: str, options: dict) -> tuple[nn.Module, tuple, tuple]:
    """(network with the offline weights, mean, std); a one-line error when they are not on this machine."""
    if arch in EMBEDDED:
        from ..models import _load_embedded

        if options:
            raise ConvscopeError(f"the embedded {arch} comes as it is: no architecture options with --pretrained")
        embedded = _load_embedded(arch)
        return embedded.network, embedded.mean, embedded.std
    if arch.startswith("torchvision:"):
        import torch
        import torchvision

        name = arch.split(":", 1)[1]
        network = _build(arch, options, allow_import=False, where="--arch")
        weights = torchvision.models.get_model_weights(name).DEFAULT
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.is_file():
            raise ConvscopeError(
                f"no offline weights for {arch} (looked for {cached}); convscope never downloads: "
                "put the file there, or train from scratch without --pretrained"
            )
        load_weights(network, cached)
        return network, IMAGENET_MEAN, IMAGENET_STD
    if arch.startswith("timm:"):
        network = _build(arch, options, allow_import=False, where="--arch")
        config = getattr(network, "pretrained_cfg", None) or {}
        found = _hub_cache(config.get("hf_hub_id"))
        if found is None:
            raise ConvscopeError(
                f"no offline weights for {arch} in the Hugging Face cache; convscope never downloads: "
                "train from scratch without --pretrained"
            )
        load_weights(network, found)
        return network, tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD))
    raise ConvscopeError(f"--pretrained needs torchvision:NAME, timm:NAME or an embedded model, not {arch!r}")


def _hub_cache(repository: str | None) -> str | None:
    """The cached ``model.safetensors`` of a Hugging Face repository, looked up without the network."""
    if not repository:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repository.split("@")[0], "model.safetensors")
    return found if isinstance(found, str) else None
