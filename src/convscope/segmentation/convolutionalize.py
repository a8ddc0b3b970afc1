"""Turn a classifier's fully-connected head into convolutions, and read per-location class maps.

Long, Shelhamer & Darrell (2015), sec. 3.1: a fully-connected layer over a C x h x w
feature map is a convolution with an h x w kernel and as many filters as outputs; the
following FC layers are 1 x 1 convolutions. At the training input size the converted
network returns a 1 x 1 map equal to the original logits; on a larger image it slides
the classifier over the image and returns a coarse map of class scores (the "tabby cat
heatmap"). For global-average-pooling + linear heads (ResNet, EfficientNet) the linear
layer becomes a 1 x 1 convolution applied before the pooling — the class activation map
of Zhou et al. (2016) — and averaging the map gives back the logits exactly.

Supported heads: torchvision-style ``features`` / ``avgpool`` / ``classifier`` stacks of
Linear, ReLU and Dropout (AlexNet, VGG); timm models (``forward_features`` + average
``global_pool`` + linear ``classifier``/``fc``/``head``); torchvision ResNet-style
``fc`` after an adaptive average pool of size 1. The feature extractor is shared with the
original network (not copied); the head's weights are copied into new conv layers.
"""

from __future__ import annotations

__all__ = ["class_heatmap", "ClassMap", "convolutionalize", "FullyConvolutional", "linear_to_conv"]

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ..models import ImageClassifier, Normalize
from ..targets import class_index


def linear_to_conv(linear: nn.Linear, in_channels: int, kernel_size: tuple[int, int] = (1, 1)) -> nn.Conv2d:
    """The convolution equal to ``linear`` applied to a flattened (in_channels, kH, kW) input.

    PyTorch flattens C x H x W in C-major order, so the weight (out, C*kH*kW) reshapes
    directly to (out, C, kH, kW).
    """
    expected = in_channels * kernel_size[0] * kernel_size[1]
    if linear.in_features != expected:
        raise ConvscopeError(
            f"linear layer takes {linear.in_features} inputs, not {in_channels}x{kernel_size[0]}x{kernel_size[1]}"
        )
    conv = nn.Conv2d(in_channels, linear.out_features, kernel_size, bias=linear.bias is not None)
    conv = conv.to(linear.weight)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels, *kernel_size))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


class FullyConvolutional(nn.Module):
    """A classifier as a fully-convolutional network: (N, 3, H, W) in [0, 1] -> (N, K, h, w) class scores.

    Attributes:
        normalize: the classifier's own input normalisation.
        features: callable mapping normalised images to the last spatial feature map.
        head: the converted head (convolutions, ReLU, Dropout).
        pooled: True for GAP heads: the logits are the spatial mean of the map.
        labels: the classifier's class names.
    """

    def __init__(self, normalize: nn.Module, features: nn.Module, head: nn.Sequential, pooled: bool, labels=None):
        super().__init__()
        self.normalize = normalize
        self.features = features
        self.head = head
        self.pooled = pooled
        self.labels = labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K): the map averaged over locations (GAP heads) or its single cell (FC heads at training size)."""
        scores = self(x)
        if self.pooled:
            return scores.mean(dim=(-2, -1))
        if scores.shape[-2:] != (1, 1):
            raise ConvscopeError(
                f"an FC head gives a {tuple(scores.shape[-2:])} map here: logits exist only at the training size"
            )
        return scores.flatten(1)


class _ForwardFeatures(nn.Module):
    """timm's ``forward_features`` as a module (the network is shared, not copied)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.forward_features(x)


def _fc_stack(classifier: nn.Module, channels: int, kernel: tuple[int, int]) -> nn.Sequential:
    layers, first = [], True
    for module in classifier if isinstance(classifier, nn.Sequential) else [classifier]:
        if isinstance(module, nn.Linear):
            layers.append(
                linear_to_conv(module, channels if first else module.in_features, kernel if first else (1, 1))
            )
            first = False
        elif isinstance(module, (nn.ReLU, nn.Dropout, nn.Identity, nn.Flatten)):
            layers.append(nn.ReLU(inplace=False) if isinstance(module, nn.ReLU) else nn.Identity())
        else:
            raise ConvscopeError(f"cannot convolutionalize a head holding {type(module).__name__}")
    if first:
        raise ConvscopeError("the classifier head holds no linear layer")
    return nn.Sequential(*layers)


def _last_linear(network: nn.Module) -> tuple[str, nn.Linear]:
    for name in ("classifier", "fc", "head"):
        module = getattr(network, name, None)
        if isinstance(module, nn.Linear):
            return name, module
    raise ConvscopeError(f"{type(network).__name__} has no linear classifier/fc/head after its pooling")


def convolutionalize(model: nn.Module, input_size: int | None = None) -> FullyConvolutional:
    """Convert ``model``'s fully-connected head into convolutions (Long et al. 2015).

    Args:
        model: an :class:`~convscope.models.ImageClassifier` (or a bare network, taken as
            already normalised) — AlexNet/VGG-style, timm, or ResNet-style (see module doc).
        input_size: the training side, used to measure the feature map an FC head sees
            (default: ``model.input_size`` or 224).

    Returns:
        A :class:`FullyConvolutional` module; the user's model is not changed.

    >>> fcn = convolutionalize(load_model("torchvision:vgg16"))
    >>> fcn(torch.rand(1, 3, 224, 224)).shape, fcn(torch.rand(1, 3, 384, 384)).shape
    (torch.Size([1, 1000, 1, 1]), torch.Size([1, 1000, 6, 6]))
    """
    normalize = model.normalize if isinstance(model, ImageClassifier) else Normalize((0.0,) * 3, (1.0,) * 3)
    network = model.network if isinstance(model, ImageClassifier) else model
    labels = getattr(model, "labels", None)
    size = input_size or getattr(model, "input_size", 224)
    if all(hasattr(network, name) for name in ("features", "avgpool", "classifier")):  # AlexNet / VGG
        with frozen(network), torch.no_grad():
            before = network.features(torch.zeros(1, 3, size, size, device=_device(network)))
            probe = network.avgpool(before)
        if before.shape[-2:] != probe.shape[-2:]:
            raise ConvscopeError(
                f"at {size} px the pool resamples {tuple(before.shape[-2:])} to "
                f"{tuple(probe.shape[-2:])}: give the input_size the network was trained at"
            )
        features = network.features
        head = _fc_stack(network.classifier, probe.shape[1], tuple(probe.shape[-2:]))
        return FullyConvolutional(normalize, features, head, pooled=False, labels=labels)
    if hasattr(network, "forward_features") and hasattr(network, "global_pool"):  # timm
        pool_type = getattr(network.global_pool, "pool_type", "avg")
        if pool_type not in ("avg", "fast", "fastavg"):
            raise ConvscopeError(f"global pool {pool_type!r} is not an average: no exact 1x1-conv equivalent")
        _, linear = _last_linear(network)
        return FullyConvolutional(
            normalize,
            _ForwardFeatures(network),
            nn.Sequential(linear_to_conv(linear, linear.in_features)),
            pooled=True,
            labels=labels,
        )
    if isinstance(getattr(network, "avgpool", None), nn.AdaptiveAvgPool2d) and isinstance(
        getattr(network, "fc", None), nn.Linear
    ):
        if network.avgpool.output_size not in (1, (1, 1)):
            raise ConvscopeError("the average pool does not pool to 1x1")
        children = dict(network.named_children())
        body = nn.Sequential(*[m for name, m in children.items() if name not in ("avgpool", "fc")])
        return FullyConvolutional(
            normalize,
            body,
            nn.Sequential(linear_to_conv(network.fc, network.fc.in_features)),
            pooled=True,
            labels=labels,
        )
    raise ConvscopeError(
        f"do not know how to convolutionalize {type(network).__name__}: expected features/avgpool/classifier "
        "(AlexNet, VGG), a timm model, or avgpool+fc (ResNet)"
    )


def _device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass
class ClassMap:
    """Per-location class evidence of :func:`class_heatmap`.

    Attributes:
        probability: (N, h, w) softmax probability of the class at each location.
        scores: (N, h, w) the class's raw score at each location.
        class_id: the class asked for.
        label: its name (when the model has labels).
    """

    probability: torch.Tensor
    scores: torch.Tensor
    class_id: int
    label: str | None


def class_heatmap(model: nn.Module, x: torch.Tensor, target: int | str, input_size: int | None = None) -> ClassMap:
    """Slide the classifier over a (larger) image: per-location probability of one class.

    Args:
        model: a classifier :func:`convolutionalize` accepts.
        x: (N, 3, H, W) in [0, 1], typically larger than the training size (e.g. 448 px
            gives a 14 x 14 map on EfficientNet, 7 x 7 on VGG).
        target: class id or name (``"tabby"`` -> ``"tabby cat"`` via the model's labels).

    The probability at each location is the softmax over all classes of that location's
    scores (the FCN paper's per-location classification), not a CAM normalised by its max.

    >>> heat = class_heatmap(model, load_image("sample:chelsea", 448), "tabby cat")
    >>> heat.probability.shape
    torch.Size([1, 14, 14])
    """
    x = check_images(x)
    labels = getattr(model, "labels", None)
    class_id = class_index(target, labels)
    with frozen(model), torch.no_grad():
        scores = convolutionalize(model, input_size)(x.to(_device(model)))
    if not 0 <= class_id < scores.shape[1]:
        raise ConvscopeError(f"class {class_id} is out of range for {scores.shape[1]} classes")
    return ClassMap(
        F.softmax(scores, dim=1)[:, class_id], scores[:, class_id], class_id, labels[class_id] if labels else None
    )
