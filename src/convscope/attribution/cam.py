"""Class activation maps: CAM (Zhou et al. 2016), Grad-CAM (Selvaraju et al. 2017),
Grad-CAM++ (Chattopadhay et al. 2018) and guided Grad-CAM.

One template: a map ``sum_c w_c A_c`` over the channels of a layer's activations ``A``;
the methods differ only in how the channel weights ``w`` are computed. The gradient-weighted
ones (Grad-CAM, Grad-CAM++ here; HiResCAM, XGrad-CAM, LayerCAM in
:mod:`~convscope.attribution.cam_family`) are each one weighting function registered with
:func:`gradient_cam`, which gives them Grad-CAM's signature. Conventions:

* the layer defaults to the last layer with a spatial output
  (:func:`~convscope.layers.default_cam_layer`: ``bn2`` on EfficientNet-Lite0,
  ``layer4`` on ResNet);
* the score is the pre-softmax class logit (as both anchors);
* Grad-CAM / Grad-CAM++ apply the papers' ReLU (``relu=False`` turns it off: captum's
  ``LayerGradCam`` default); CAM follows Zhou and has no ReLU;
* the (N, 1, h, w) map is then upsampled to the input size with bilinear interpolation
  (``align_corners=False``; ``interpolation="nearest"`` as in captum's ``GuidedGradCam``),
  and not normalised (pytorch-grad-cam min-max normalises every map; rendering does
  that here, see :func:`convscope.render.normalize_map`).
"""

from __future__ import annotations

__all__ = [
    "cam",
    "cam_layer",
    "gradcam",
    "gradcam_pp",
    "gradient_cam",
    "guided_gradcam",
    "layer_gradients",
    "upsample_map",
]

import inspect
import weakref
from typing import Callable

import torch
from torch import nn

from ..errors import ConvscopeError
from ..filters import resize_map
from ..hooks import capture
from ..layers import canonical_name, default_cam_layer
from .gradients import objective_score
from .registry import METHODS

_DEFAULT_LAYERS: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def cam_layer(model: nn.Module, layer: str | None, size: int = 224) -> str:
    """``layer`` checked, or the model's default CAM layer (found once per model and cached)."""
    if layer is not None:
        return canonical_name(model, layer)
    if model not in _DEFAULT_LAYERS:
        _DEFAULT_LAYERS[model] = default_cam_layer(model, size)
    return _DEFAULT_LAYERS[model]


def upsample_map(heat: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, H, W), bilinear (align_corners=False) or nearest (:func:`convscope.filters.resize_map`)."""
    return resize_map(heat, size, interpolation)


def layer_gradients(model, x, target, layer: str, objective: str = "logit") -> tuple[torch.Tensor, torch.Tensor]:
    """Activations A and gradients dscore/dA at ``layer`` (both (N, C, h, w)): one forward pass,
    and a backward pass that stops at the layer."""
    x = x.detach()
    with capture(model, layer, grads=True) as seen:
        score = objective_score(model, x, target, objective)
        activations = seen[layer].detach()
        if activations.ndim != 4:
            raise ConvscopeError(f"layer {layer!r} has output shape {tuple(activations.shape)}; CAM needs (N, C, h, w)")
        gradients = seen.gradient(score.sum(), layer)
    return activations, gradients


def _finish(heat: torch.Tensor, x: torch.Tensor, relu: bool, interpolation: str) -> torch.Tensor:
    heat = heat.clamp(min=0) if relu else heat
    return upsample_map(heat, tuple(x.shape[-2:]), interpolation)


def _layer_list(model, layer, size: int, several: bool) -> list[str]:
    """The CAM layer(s): the default one, or ``layer`` checked; with ``several`` a comma-separated
    string or a sequence of names."""
    if layer is None or not several:
        return [cam_layer(model, layer, size)]
    names = [part.strip() for part in layer.split(",")] if isinstance(layer, str) else list(layer)
    if not names or any(not name for name in names):
        raise ConvscopeError(f"layer must name one or more layers (comma-separated), got {layer!r}")
    return [canonical_name(model, name) for name in names]


def _activations_and_gradients(model, x, target, layers: list[str], objective: str):
    """[(A, dscore/dA)] at each layer from one forward and one backward pass."""
    if len(layers) == 1:
        return [layer_gradients(model, x, target, layers[0], objective)]
    with capture(model, layers, grads=True) as seen:
        score = objective_score(model, x.detach(), target, objective)
        for name in layers:
            if seen[name].ndim != 4:
                raise ConvscopeError(
                    f"layer {name!r} has output shape {tuple(seen[name].shape)}; CAM needs (N, C, h, w)"
                )
        score.sum().backward()
        return [(seen[name].detach(), seen.gradients[name]) for name in layers]


def _fuse(maps: list[torch.Tensor], x: torch.Tensor, relu: bool, gamma: float, interpolation: str) -> torch.Tensor:
    """LayerCAM's fusion (Jiang 2021): each map scaled by ``tanh(gamma M / max M)``, upsampled, element-wise max."""
    fused = None
    for heat in maps:
        heat = heat.clamp(min=0) if relu else heat
        peak = heat.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
        heat = upsample_map(torch.tanh(gamma * heat / peak), tuple(x.shape[-2:]), interpolation)
        fused = heat if fused is None else torch.maximum(fused, heat)
    assert fused is not None
    return fused


def gradient_cam(*, fuse: bool = False, **meta) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """The template of the gradient-weighted CAMs: register a method from its weighting alone.

    ``weighting(activations, gradients, **options) -> weights`` (both (N, C, h, w); the weights
    (N, C, 1, 1) per channel or (N, C, h, w) per position) becomes the registered method
    ``name(model, x, target=None, layer=None, relu=True, interpolation="bilinear", objective="logit",
    **options)`` with the weighting's name, docstring and keyword options: one forward and one
    backward pass give ``A`` and ``dscore/dA`` at the layer (default: the model's last spatial
    layer), the map is ``sum_c w_c A_c``, then the ReLU (``relu=True``) and the upsampling.
    ``fuse=True`` lets ``layer`` name several layers (a comma-separated string or a list), fused
    as LayerCAM's paper does (adds ``gamma`` after ``relu``); with one layer the map is unscaled.
    """

    def register(weighting: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        own = list(inspect.signature(weighting).parameters.values())[2:]
        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        base = [
            inspect.Parameter("model", keyword),
            inspect.Parameter("x", keyword),
            inspect.Parameter("target", keyword, default=None),
            inspect.Parameter(
                "layer", keyword, default=None, annotation="str | Sequence[str] | None" if fuse else "str | None"
            ),
            inspect.Parameter("relu", keyword, default=True, annotation="bool"),
            *([inspect.Parameter("gamma", keyword, default=2.0, annotation="float")] if fuse else []),
            inspect.Parameter("interpolation", keyword, default="bilinear", annotation="str"),
            inspect.Parameter("objective", keyword, default="logit", annotation="str"),
        ]
        signature = inspect.Signature(base + own, return_annotation="torch.Tensor")

        def method(*args, **kwargs) -> torch.Tensor:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            model, x = values["model"], values["x"]
            layers = _layer_list(model, values["layer"], x.shape[-1], several=fuse)
            options = {parameter.name: values[parameter.name] for parameter in own}
            maps = [
                (weighting(activations, grads, **options) * activations).sum(dim=1, keepdim=True)
                for activations, grads in _activations_and_gradients(
                    model, x, values["target"], layers, values["objective"]
                )
            ]
            if len(maps) == 1:
                return _finish(maps[0], x, values["relu"], values["interpolation"])
            return _fuse(maps, x, values["relu"], values["gamma"], values["interpolation"])

        method.__name__ = method.__qualname__ = weighting.__name__
        method.__doc__, method.__module__ = weighting.__doc__, weighting.__module__
        method.__signature__ = signature  # type: ignore[attr-defined]
        return METHODS.register(kind="cam", display="minmax", **meta)(method)

    return register


@gradient_cam()
def gradcam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``relu(sum_c w_c A_c)`` with ``w_c`` = spatial mean of dy/dA_c.

    Equals captum ``LayerGradCam(relu_attributions=True)`` upsampled bilinearly, and
    pytorch-grad-cam ``GradCAM`` up to its per-image min-max scaling. Signature and options:
    :func:`gradient_cam`.

    Returns:
        (N, 1, H, W), not normalised.
    """
    return grads.mean(dim=(2, 3), keepdim=True)


@gradient_cam()
def gradcam_pp(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), closed form with the exponential-score shortcut.

    ``alpha = g^2 / (2 g^2 + sum_ab(A) g^3 + 1e-6)`` (0 where g = 0), ``w_c = sum_ab relu(g) alpha``,
    map ``relu(sum_c w_c A_c)`` -- the formula of the paper's eq. 19 and of pytorch-grad-cam.
    Signature and options: :func:`gradient_cam`.
    """
    squared = grads.pow(2)
    alpha = squared / (2 * squared + activations.sum(dim=(2, 3), keepdim=True) * grads.pow(3) + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (grads.clamp(min=0) * alpha).sum(dim=(2, 3), keepdim=True)


def _classifier_head(model: nn.Module, classes: int) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == classes]
    if not linears:
        raise ConvscopeError(
            "CAM needs a network ending in global average pooling + nn.Linear; "
            "this one has no final Linear layer (use method='gradcam')"
        )
    return linears[-1]


@METHODS.register(kind="cam", display="minmax")
def cam(
    model, x, target=None, layer: str | None = None, relu: bool = False, interpolation: str = "bilinear"
) -> torch.Tensor:
    """Class activation mapping (Zhou et al. 2016): ``M_c = sum_k W[c, k] A_k`` from the last Linear's weights.

    Only for networks whose logits are ``Linear(global average pool(A))`` of the CAM layer;
    this is checked numerically on the batch (the logits must equal ``W mean(A) + b``),
    and any other head is refused with an error. No gradient is needed. Zhou's map has
    no ReLU (``relu=True`` adds one). On such heads Grad-CAM equals CAM / (h w).
    """
    layer = cam_layer(model, layer, x.shape[-1])
    with torch.no_grad(), capture(model, layer, detach=True) as seen:
        logits = model(x)
    activations = seen[layer]
    head = _classifier_head(model, logits.shape[-1])
    if activations.ndim != 4 or activations.shape[1] != head.in_features:
        raise ConvscopeError(
            f"CAM: layer {layer!r} has shape {tuple(activations.shape[1:])} but the last Linear "
            f"takes {head.in_features} features; the head is not GAP + Linear (use method='gradcam')"
        )
    pooled = head(activations.mean(dim=(2, 3)))
    if not torch.allclose(pooled, logits, rtol=1e-3, atol=1e-3 * logits.abs().max().item() + 1e-5):
        raise ConvscopeError(
            f"CAM: the logits are not Linear(global average pool({layer})); "
            "the head is not GAP + Linear (use method='gradcam')"
        )
    if callable(target) and not isinstance(target, torch.Tensor):
        raise ConvscopeError("CAM explains a class: give a class id or name, not a callable")
    from ..targets import resolve_target

    ids = resolve_target(target, logits, getattr(model, "labels", None))
    weights = head.weight[ids][:, :, None, None]
    return _finish((weights * activations).sum(dim=1, keepdim=True), x, relu, interpolation)


@METHODS.register(kind="cam")
def guided_gradcam(
    model,
    x,
    target=None,
    layer: str | None = None,
    interpolation: str = "bilinear",
    channels: str | None = None,
    objective: str = "logit",
) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop ⊙ upsampled Grad-CAM (with ReLU).

    Per channel (N, 3, H, W). The paper upsamples bilinearly; captum ``GuidedGradCam``
    uses nearest (``interpolation="nearest"`` reproduces it).
    """
    from .gradients import reduce_channels
    from .rectifiers import guided_backprop

    heat = gradcam(model, x, target, layer, relu=True, interpolation=interpolation, objective=objective)
    return reduce_channels(guided_backprop(model, x, target, objective=objective) * heat, channels)
