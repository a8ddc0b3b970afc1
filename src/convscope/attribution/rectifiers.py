"""Backward rules of guided backpropagation and the deconvnet, swapped in for every rectifier.

:func:`rectifier_rule` is a context manager: inside it, every rectifier the model calls
uses a modified backward pass; on exit (also on error) nothing of it remains. It works
through a :class:`~torch.overrides.TorchFunctionMode`, so it sees rectifier *modules*
(``nn.ReLU`` incl. ``inplace=True``, ``nn.ReLU6``, ``nn.Hardtanh(0, t)``) and *functional*
calls inside ``forward`` (``F.relu``, ``torch.relu``, ``F.relu_``, ``Tensor.relu``,
``F.relu6``, ``F.hardtanh`` with ``min_val=0``) alike, with no module swapped and no hook
added. captum and pytorch-grad-cam only handle ``nn.ReLU`` modules.

Rules (g = gradient arriving from above, x = the rectifier's forward input):

* ``"guided"`` (Springenberg et al. 2015, guided backpropagation):
  ``g_in = g * 1[g > 0] * 1[x > 0]``.
* ``"deconvnet"`` (Zeiler & Fergus 2014): ``g_in = g * 1[g > 0]`` (the forward input is
  not used at all).

Clamps with an upper bound (ReLU6 = clamp(x, 0, 6), used throughout EfficientNet-Lite):
the guided rule keeps the clamp's ordinary derivative, ``1[0 < x < 6]``, and adds the
gradient-sign gate, i.e. a unit saturated at 6 passes no gradient, exactly as in the
plain backward pass (guided backprop only *adds* the sign gate to the normal derivative).
The deconvnet rule ignores the forward input, so the upper bound plays no part in it.

Smooth activations (SiLU/Swish, GELU, Hardswish, Mish, ...) are not rectifiers and are
left untouched: they back-propagate their ordinary gradient, so on a SiLU network guided
backprop and the deconvnet degrade towards the plain gradient. :class:`RectifierCount`
reports how many rectifier calls were rewritten so callers can warn when it is zero.
"""

from __future__ import annotations

__all__ = ["deconvnet", "guided_backprop", "rectifier_rule", "RectifierCount", "RULES"]

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .registry import METHODS

RULES = ("guided", "deconvnet")


class _Rectify(torch.autograd.Function):
    """clamp(x, lower, upper) forward; the chosen rule backward (used for the deconvnet, whose
    rule ignores the forward input). In-place safe (mark_dirty)."""

    @staticmethod
    def forward(ctx, x, lower, upper, rule, inplace):
        gate = x > lower if upper is None else (x > lower) & (x < upper)
        if inplace:
            x.clamp_(lower, upper)
            ctx.mark_dirty(x)
            out = x
        else:
            out = x.clamp(lower, upper)
        ctx.rule = rule
        ctx.save_for_backward(gate)
        return out

    @staticmethod
    def backward(ctx, grad):
        (gate,) = ctx.saved_tensors
        positive = grad.clamp(min=0)
        return (positive * gate if ctx.rule == "guided" else positive), None, None, None, None


def _argument(args, kwargs, index, name, default):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


@dataclass
class RectifierCount:
    """How many rectifier calls the context rewrote (0 means the rule changed nothing)."""

    calls: int = 0


class _RectifierMode(TorchFunctionMode):
    def __init__(self, rule: str, record: RectifierCount):
        super().__init__()
        self.rule, self.record = rule, record
        self.relus = {
            F.relu: False,
            torch.relu: False,
            torch.Tensor.relu: False,
            F.relu_: True,
            torch.relu_: True,
            torch.Tensor.relu_: True,
        }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        bounds = None
        if func in self.relus:
            bounds = (0.0, None, self.relus[func] or bool(kwargs.get("inplace", False)))
        elif func is F.relu6:
            bounds = (0.0, 6.0, bool(_argument(args, kwargs, 1, "inplace", False)))
        elif func in (F.hardtanh, F.hardtanh_):
            lower = float(_argument(args, kwargs, 1, "min_val", -1.0))
            upper = float(_argument(args, kwargs, 2, "max_val", 1.0))
            if lower == 0.0 and upper > 0.0:
                bounds = (0.0, upper, func is F.hardtanh_ or bool(_argument(args, kwargs, 3, "inplace", False)))
        if bounds is None or not isinstance(args[0], torch.Tensor) or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        self.record.calls += 1
        lower, upper, inplace = bounds
        if self.rule == "guided":
            # the rectifier's own backward gives g * 1[lower < x < upper]; gating the gradient
            # that reaches its output by sign first makes that the guided rule (no Python
            # autograd Function: about as fast as a plain backward pass)
            out = func(*args, **kwargs)
            if out.requires_grad:
                out.register_hook(_positive)
            return out
        return _Rectify.apply(args[0], lower, upper, self.rule, inplace)


def _positive(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp(min=0)


@contextlib.contextmanager
def rectifier_rule(rule: str = "guided") -> Iterator[RectifierCount]:
    """Use the guided-backprop or deconvnet backward rule for every rectifier in the block.

    Args:
        rule: ``"guided"`` or ``"deconvnet"``.

    Yields:
        a :class:`RectifierCount` filled in as the block runs.

    >>> with rectifier_rule("guided") as seen:
    ...     score = model(x)[:, 285].sum()
    ...     (grad,) = torch.autograd.grad(score, x)
    >>> seen.calls > 0
    True

    The forward values are unchanged; only the backward pass of rectifiers differs.
    Run the backward pass inside the block only if it has no other rectifier calls;
    the rule is attached to the graph at forward time, so a backward pass after the
    block still uses it.
    """
    if rule not in RULES:
        from ..errors import ConvscopeError

        raise ConvscopeError(f"unknown rectifier rule {rule!r}; known: {', '.join(RULES)}")
    record = RectifierCount()
    with _RectifierMode(rule, record):
        yield record


def _rectified_gradient(model, x, target, rule: str, objective: str) -> torch.Tensor:
    import warnings

    from .gradients import objective_score

    x = x.detach().requires_grad_(True)
    with rectifier_rule(rule) as seen:
        score = objective_score(model, x, target, objective)
    if seen.calls == 0:
        warnings.warn(
            f"{rule}: the model calls no ReLU/ReLU6-style rectifier (SiLU, GELU, ... are left as they are), "
            "so this is the plain gradient",
            stacklevel=4,  # past the method and its image check
        )
    (grad,) = torch.autograd.grad(score.sum(), x)
    return grad


@METHODS.register(kind="rectifier")
def guided_backprop(model, x, target=None, channels: str | None = None, objective: str = "logit") -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015), via :func:`rectifier_rule` ``"guided"``.

    Every rectifier passes back only positions where its forward input is > 0 and the
    incoming gradient is > 0 (ReLU6: see the module docstring for the upper bound).
    Equals captum ``GuidedBackprop`` on networks whose rectifiers are all ``nn.ReLU``
    modules; unlike captum it also covers ReLU6 and functional calls.

    Returns:
        the signed per-channel map (N, 3, H, W); ``channels="max"``/``"sum"`` -> (N, 1, H, W).
    """
    from .gradients import reduce_channels

    return reduce_channels(_rectified_gradient(model, x, target, "guided", objective), channels)


@METHODS.register(kind="rectifier")
def deconvnet(model, x, target=None, channels: str | None = None, objective: str = "logit") -> torch.Tensor:
    """Deconvnet reconstruction (Zeiler & Fergus 2014), via :func:`rectifier_rule` ``"deconvnet"``.

    Every rectifier passes back the positive part of the incoming gradient, whatever its
    forward input. Convolutions are transposed and max-pooling switches reused by autograd,
    as in the paper. Equals captum ``Deconvolution`` on ``nn.ReLU`` networks.

    Returns:
        the signed per-channel map (N, 3, H, W); ``channels="max"``/``"sum"`` -> (N, 1, H, W).
    """
    from .gradients import reduce_channels

    return reduce_channels(_rectified_gradient(model, x, target, "deconvnet", objective), channels)
