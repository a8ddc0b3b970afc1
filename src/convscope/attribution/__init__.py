"""Attribution maps: why the model predicts what it predicts.

One entry point, :func:`attribute`, over the registry :data:`METHODS` (adding a method is
one function registered here). Every method takes ``(model, x, target, **options)`` with
``x`` (N, 3, H, W) in [0, 1] on the model's device and returns a raw tensor: (N, 1, H, W)
for maps reduced over colour channels, (N, 3, H, W) for per-channel maps, always at the
input's size. Display scaling lives in :mod:`convscope.render`.
"""

from __future__ import annotations

import inspect

import torch

from ..checks import check_images, model_device
from ..errors import ConvscopeError
from ..hooks import frozen
from ..registry import import_submodules, unknown_options_message
from ..targets import Target

# The methods register themselves (``@METHODS.register(...)``) when their module is imported:
# the listed modules first (the order of the CLI's ``--method all`` and the report), then any
# other module of this package, so a new method is one new file.
from . import gradients, rectifiers, noise, integrated, perturbation  # noqa: F401,I001
from .cam import cam, gradcam, gradcam_pp, guided_gradcam
from .cam_family import ablationcam, eigencam, fullgrad, hirescam, layercam, scorecam, xgradcam
from .gradients import input_x_gradient, saliency
from .integrated import integrated_gradients
from .noise import smooth as smooth_method
from .noise import smoothgrad, smoothgrad_sq
from .perturbation import occlusion
from .rectifiers import deconvnet, guided_backprop, rectifier_rule
from .shapley import deeplift, gradient_shap, kernel_shap, lime
from .registry import METHODS

import_submodules(__name__)

STOCHASTIC = frozenset(METHODS.names(stochastic=True))
"""Methods that draw random noise (reproducible with ``seed=``); read from the registry."""


def display_mode(method: str) -> str:
    """How ``method``'s map is scaled for display (the registry's ``display``: ``minmax``, ``abs`` or ``signed``)."""
    return METHODS.meta(method)["display"]


def display_unit(method: str, options: dict | None = None) -> str:
    """What ``method``'s values are, for a colour bar: the registry's ``unit`` with the method's
    ``options`` (else its defaults) filled in; a min-max CAM is ``"CAM"``, any other map ``"attribution"``."""
    meta = METHODS.meta(method)
    if meta["unit"]:
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(METHODS.get(method)).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        return meta["unit"].format(**{**defaults, **(options or {})})
    # a CAM drawn min-max is the class activation map; one drawn by |value| (Guided Grad-CAM) is a gradient product
    return "CAM" if meta["kind"] == "cam" and meta["display"] == "minmax" else "attribution"


def quick_options(method: str) -> dict:
    """The registry's smaller settings of ``method`` for the report and the web app (a copy)."""
    return dict(METHODS.meta(method)["quick"])


def method_options(method: str) -> list[str]:
    """The options a registered method accepts (after ``model, x, target``)."""
    return list(inspect.signature(METHODS.get(method)).parameters)[3:]


def _renamed(function) -> dict[str, str]:
    """Old option names a method still accepts (``registry.renamed_options``): old -> new."""
    return getattr(function, "__renamed__", {})


def attribute(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    method: str = "gradcam",
    layer: str | None = None,
    smooth: bool | dict = False,
    **options,
) -> torch.Tensor:
    """Attribution map of ``target`` for every image of ``x`` by the registered ``method``.

    Args:
        model: any classifier taking RGB in [0, 1] (e.g. from :func:`convscope.load_model`).
        x: (N, 3, H, W) in [0, 1]; moved to the model's device.
        target: class id, class name, one id per image, ``Tensor[N]``, callable on the
            logits, or ``None`` (the predicted class).
        method: a name in :data:`METHODS` (``convscope.attribution.METHODS.names()``).
        layer: the layer of CAM methods (dotted name; default: the last spatial layer).
        smooth: average the method over noisy copies (SmoothGrad's idea for any method):
            ``True`` or the options of :func:`~convscope.attribution.noise.smooth` (``smooth_method``)
            (``samples``, ``noise``, ``batch_size``, ``seed``; ``n`` is the old name of ``samples``).
        **options: the method's own options (see its docstring).

    Returns:
        the raw map (N, 1, H, W) or (N, 3, H, W), on ``x``'s device (or a tuple for
        ``integrated_gradients(..., return_gap=True)``). The model is left as it was:
        weights, ``training`` flags, ``requires_grad`` and hooks.

    >>> heat = attribute(model, load_image("sample:chelsea"), "Egyptian cat", method="gradcam")
    >>> heat.shape
    torch.Size([1, 1, 224, 224])
    """
    method = METHODS.canonical(method)
    function = METHODS.get(method)
    accepted = method_options(method)
    if layer is not None:
        if "layer" not in accepted:
            raise ConvscopeError(f"method {method!r} takes no layer")
        options["layer"] = layer
    unknown = sorted(set(options) - set(accepted) - set(_renamed(function)))
    if unknown:
        raise ConvscopeError(unknown_options_message(f"method {method!r}", unknown, accepted))
    x = check_images(x)
    x = x.to(model_device(model)).detach()
    if smooth:
        settings = smooth if isinstance(smooth, dict) else {}
        function = smooth_method(function, **settings)
    with frozen(model):
        return function(model, x, target, **options)


__all__ = [
    "METHODS",
    "STOCHASTIC",
    "ablationcam",
    "deeplift",
    "gradient_shap",
    "kernel_shap",
    "lime",
    "attribute",
    "cam",
    "eigencam",
    "fullgrad",
    "hirescam",
    "layercam",
    "scorecam",
    "xgradcam",
    "deconvnet",
    "display_mode",
    "display_unit",
    "gradcam",
    "gradcam_pp",
    "guided_backprop",
    "guided_gradcam",
    "input_x_gradient",
    "integrated_gradients",
    "method_options",
    "occlusion",
    "quick_options",
    "rectifier_rule",
    "saliency",
    "smooth_method",
    "smoothgrad",
    "smoothgrad_sq",
]
