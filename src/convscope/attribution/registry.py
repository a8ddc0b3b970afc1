"""The registry of attribution methods read by :func:`convscope.attribute`, the CLI, the report,
the web app and the tests.

An entry is ``method(model, x, target, **options) -> Tensor`` registered with its metadata::

    @METHODS.register(kind="cam", display="minmax")

Metadata (defaults in brackets):

* ``kind``: ``"gradient"`` | ``"rectifier"`` | ``"path"`` | ``"noise"`` | ``"perturbation"`` | ``"cam"`` | ``"relevance"`` (LRP) |
  ``"shapley"``;
* ``display`` [``"abs"``]: how the map is scaled for display (:func:`convscope.render.normalize_map`):
  ``"abs"`` (|value| / p99.5, for gradient maps), ``"minmax"`` (CAM-like maps) or ``"signed"``
  (true units on a diverging map centred at 0: occlusion);
* ``unit`` [``""``]: what the values are, for colour bars (:func:`convscope.attribution.display_unit`):
  a text that may name the method's options (``"drop in {objective} when hidden"``); empty: ``"CAM"``
  for a min-max CAM, else ``"attribution"``;
* ``stochastic`` [False]: draws random numbers (reproducible with ``seed=``);
* ``quick`` [{}]: smaller settings for the report and the web app (under a minute on two cores).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from ..checks import checks_images
from ..registry import Registry
from ..targets import Target


class AttributionMethod(Protocol):
    """The contract of a registered attribution method: ``x`` (N, 3, H, W) in [0, 1] on the
    model's device, any form of the target contract, the method's own keyword options; returns
    the raw map (N, 1, H, W) or (N, 3, H, W) at the input's size. Runs inside ``frozen(model)``."""

    __name__: str

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, target: Target = None, /, **options: Any
    ) -> torch.Tensor: ...


class MethodRegistry(Registry[AttributionMethod]):
    """The attribution registry: a registered method checks its images when called directly
    (``gradcam(model, x)``) as :func:`convscope.attribute` does, without the [0, 1] bound
    (SmoothGrad's noisy copies lie outside it by design)."""

    def register(self, name: str | None = None, /, **meta: Any):
        add = super().register(name, **meta)
        return lambda function: add(checks_images(function, bounds=False))


METHODS: Registry[AttributionMethod] = MethodRegistry(
    "attribution method", kind="gradient", display="abs", unit="", stochastic=False, quick={}
)

__all__ = ["METHODS", "AttributionMethod", "MethodRegistry"]
