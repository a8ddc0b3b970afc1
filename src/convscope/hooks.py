"""The one hook manager of convscope, and the guard that keeps a user's model as it was.

Every hook convscope puts on a model is made by :func:`capture` inside a ``with``
block and removed on exit, also when the body raises (the captum pattern). Every
method runs the model inside :func:`frozen`, which puts it in eval mode with weights
not requiring gradients (so backward passes compute input gradients only) and restores
each module's ``training`` flag and each parameter's ``requires_grad`` afterwards.
"""

from __future__ import annotations

__all__ = [
    "capture",
    "Captured",
    "cut_forward",
    "ForwardCut",
    "ForwardStopped",
    "frozen",
    "HOOK_FREE",
    "hook_count",
    "rewrite_outputs",
]

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn


from .errors import ConvscopeError
from .layers import HOOK_FREE, find_layer, require_hooks  # noqa: F401  (HOOK_FREE re-exported)
from .state import frozen  # noqa: F401  (re-exported: convscope.hooks.frozen)


@dataclass
class Captured:
    """What :func:`capture` recorded during the forward/backward passes in its block.

    Attributes:
        activations: layer name -> output of that layer (the last forward pass). Kept in
            the autograd graph unless ``detach=True``; cloned so a later in-place op
            (e.g. ``ReLU(inplace=True)``) cannot change it.
        gradients: layer name -> gradient of the backward pass w.r.t. that output.
    """

    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, tuple[torch.Tensor, int]] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.activations:
            raise ConvscopeError(_did_not_run(name))
        return self.activations[name]

    def gradient(self, score: torch.Tensor, name: str) -> torch.Tensor:
        """d score / d (output of layer ``name``), back-propagating only as far as that layer
        (the part of the network below it is skipped). Needs ``grads=True``."""
        if name not in self.outputs:
            raise ConvscopeError(
                _did_not_run(name)
                if name not in self.activations
                else f"layer {name!r}: no gradient recorded (capture(..., grads=True) under torch.enable_grad())"
            )
        output, version = self.outputs[name]
        if output._version == version:
            torch.autograd.grad(score, output)
        else:  # a later in-place op rewrote the output: back-propagate the whole way instead
            score.backward()
        return self.gradients[name]


def _did_not_run(name: str) -> str:
    return (
        f"layer {name!r} did not run in the forward pass (the network skips it, e.g. an inactive "
        "drop_path in eval mode): pick another layer"
    )


@contextlib.contextmanager
def capture(
    model: nn.Module, layers: str | Sequence[str], grads: bool = False, detach: bool = False
) -> Iterator[Captured]:
    """Record activations (and gradients) at named layers while the block runs.

    Args:
        model: any ``nn.Module`` (an :class:`~convscope.models.ImageClassifier` accepts the
            names inside its network too).
        layers: one dotted name or several (``"blocks.6.0"``, ``"features.28"``).
        grads: also record the gradient w.r.t. each output in backward passes.
        detach: store detached activations (for reading; saves memory).

    >>> with capture(model, "blocks.6") as seen:
    ...     logits = model(x)
    >>> seen["blocks.6"].shape
    torch.Size([1, 320, 7, 7])
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    modules = {name: find_layer(model, name) for name in names}
    seen = Captured()
    with contextlib.ExitStack() as stack:
        for name, module in modules.items():
            require_hooks(module, name)
            stack.enter_context(module.register_forward_hook(_recorder(name, seen, grads, detach)))
        yield seen


def _recorder(name: str, seen: Captured, grads: bool, detach: bool):
    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor: pick another layer")
        if grads and not output.requires_grad and torch.is_grad_enabled():
            # nothing below this layer needs gradients (frozen weights, constant input): start the
            # graph here, so the backward pass stops at this layer; the clone keeps the returned
            # tensor a non-leaf, so a following in-place op (ReLU6(inplace=True)) is allowed
            output = output.detach().requires_grad_(True).clone()
        seen.activations[name] = output.detach().clone() if detach else output.clone()
        if grads and output.requires_grad:
            output.register_hook(lambda grad: seen.gradients.__setitem__(name, grad))
            seen.outputs[name] = (output, output._version)
        return output

    return hook


class ForwardStopped(Exception):
    """Raised inside a forward pass by a :func:`cut_forward` hook once every needed layer has run."""


@dataclass
class ForwardCut:
    """Counts the calls of some layers in each forward pass; once :meth:`arm` ed, stops the pass
    as soon as each layer has run as often as in the pass that was counted."""

    calls: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] | None = None

    def begin(self) -> None:
        """Call before each forward pass."""
        self.calls = {}

    def arm(self) -> None:
        """Stop later passes after the layers' last calls (as counted in the pass just run)."""
        self.expected = dict(self.calls)


@contextlib.contextmanager
def cut_forward(model: nn.Module, layers: Sequence[str]) -> Iterator[ForwardCut]:
    """Run the forward pass only as far as ``layers`` need: when the caller needs those layers'
    outputs and not the logits, the rest of the network is skipped (the caller catches
    :class:`ForwardStopped`). Enter it after :func:`capture` so its hooks run after the recorder's.
    """
    cut = ForwardCut()

    def stopper(name: str):
        def hook(module, inputs, output):
            cut.calls[name] = cut.calls.get(name, 0) + 1
            if cut.expected is not None and all(cut.calls.get(n, 0) >= c for n, c in cut.expected.items()):
                raise ForwardStopped

        return hook

    with contextlib.ExitStack() as stack:
        for name in dict.fromkeys(layers):
            require_hooks(find_layer(model, name), name)
            stack.enter_context(find_layer(model, name).register_forward_hook(stopper(name)))
        yield cut


@contextlib.contextmanager
def rewrite_outputs(
    model: nn.Module, layers: Sequence[str], rewrite: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """While the block runs, every call of each layer in ``layers`` returns ``rewrite(output)``
    instead of its output (a defense inside the network, e.g. stochastic activation pruning).
    The hooks go on exit, also when the block raises."""

    def hook(module, inputs, output):
        return rewrite(output)

    with contextlib.ExitStack() as stack:
        for name in dict.fromkeys(layers):
            module = find_layer(model, name)
            require_hooks(module, name)
            stack.enter_context(module.register_forward_hook(hook))
        yield


def hook_count(model: nn.Module) -> int:
    """How many hooks of any kind sit on the model's modules (for the 'nothing left behind' checks)."""
    total = 0
    for module in model.modules():
        for attribute in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
            "_load_state_dict_pre_hooks",
        ):
            total += len(getattr(module, attribute, {}) or {})
    return total
