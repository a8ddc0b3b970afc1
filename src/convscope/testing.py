"""Helpers for tests (convscope's and users'): prove a method left the model as it was."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .hooks import hook_count


@dataclass(frozen=True)
class ModelState:
    """What a method must not change: weights, hooks, ``training`` and ``requires_grad`` flags."""

    weights: tuple[float, ...]
    hooks: int
    training: tuple[bool, ...]
    requires_grad: tuple[bool, ...]
    grads: tuple[bool, ...]


def model_state(model: nn.Module) -> ModelState:
    """A fingerprint of the model's state (weights summed per tensor, to float precision)."""
    with torch.no_grad():
        weights = tuple(float(t.double().sum()) + float(t.double().abs().sum()) for t in model.state_dict().values()
                        if t.is_floating_point())
    return ModelState(
        weights,
        hook_count(model),
        tuple(m.training for m in model.modules()),
        tuple(p.requires_grad for p in model.parameters()),
        tuple(p.grad is not None for p in model.parameters()),
    )


def assert_untouched(model: nn.Module, before: ModelState) -> None:
    """Raise AssertionError naming what changed since ``before = model_state(model)``."""
    after = model_state(model)
    for field in ("hooks", "training", "requires_grad", "grads", "weights"):
        assert getattr(after, field) == getattr(before, field), f"the method changed the model's {field}"


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``convscope ARGS`` in-process (pytest's ``monkeypatch`` and ``capsys``): (exit code, stdout, stderr)."""
    import sys

    from .cli import main

    monkeypatch.setattr(sys, "argv", ["convscope", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load_imagecorruptions():
    """The reference package ``imagecorruptions`` (test/benchmark only), made importable on
    today's numpy, scikit-image and setuptools: it needs ``pkg_resources.resource_filename``,
    ``np.float_`` and scikit-image's removed ``multichannel`` argument. Patches the process."""
    import importlib
    import os
    import sys
    import types

    import numpy as np
    from skimage.filters import gaussian

    if "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, path: os.path.join(os.path.dirname(sys.modules[package].__file__), path)
        sys.modules["pkg_resources"] = shim
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    module = importlib.import_module("imagecorruptions")

    def gaussian_compat(image, sigma, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, sigma=sigma, **kwargs)

    module.corruptions.gaussian = gaussian_compat
    return module
