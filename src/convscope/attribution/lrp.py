"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019, "Layer-wise
relevance propagation: an overview") for CNNs.

The relevance of the target logit (its value, so the map sums to it where the rules
conserve) is passed down layer by layer. Every ``conv2d`` / ``linear`` call the model
makes gets a rule (``x`` its input, ``z = Wx + b`` its output, ``R`` the relevance of
the output, ``stab(z) = z + eps * sign(z)`` with sign(0) = +1):

* ``epsilon``: ``R_in = x * W^T (R / stab_eps(z))`` (eps = ``epsilon``);
* ``gamma`` (Montavon 2019): positive contributions boosted by ``gamma``:
  ``W + gamma W+`` for outputs > 0, ``W + gamma W-`` for outputs < 0 (zennit's
  generalisation to signed inputs: negative inputs use the other weight);
* ``alpha1beta0`` / ``alpha2beta1`` (Bach 2015): ``alpha`` times the positive, minus
  ``beta`` times the negative contributions, each normalised by its own sum;
* ``zbox`` (z^B, Montavon 2017) for the input layer: ``z = Wx - W+ l - W- h`` with the box
  ``[l, h]`` of valid inputs (pixels in [0, 1], mapped through the model's normalisation);
* ``flat`` (the first layer of ``epsilon_alpha2_beta1_flat``): relevance spread uniformly
  over the receptive field, ``R_in = 1^T (R / stab(1^T 1))``.

Composites, as zennit 0.5 defines them: ``epsilon_gamma_box`` (z^B on the first conv,
gamma 0.25 on the other convs, epsilon 1e-6 on linear layers) and
``epsilon_alpha2_beta1_flat`` (flat on the first conv/linear, alpha2beta1 on convs,
epsilon on linear layers); ``epsilon``, ``gamma``, ``alpha1beta0`` and ``alpha2beta1``
apply one rule to every layer. Other layers (zennit's layer map):

* BatchNorm (eval mode) right after a conv/linear is **folded** into it for the backward
  pass (``W' = W g / sqrt(var + e)``, ``b' = (b - mu) g / sqrt(var + e) + beta``, the
  canonization of Kohlbrenner et al. 2020); the model's weights are never touched -- the
  folded weights exist only inside the rule. Any other BatchNorm passes relevance as is.
* Activations (ReLU, ReLU6 = Hardtanh(0, 6), hard-swish, SiLU, GELU, ...; modules and
  functional calls alike) pass relevance unchanged (zennit's ``Pass``). For ReLU that is
  exact (an inactive unit's output is 0, so the next layer gives it no relevance). For
  ReLU6 a unit saturated at 6 still receives relevance (its value 6 is what the next
  layer saw), and hard-swish / SiLU have a negative branch whose relevance keeps its
  sign: on EfficientNet-Lite (ReLU6) and MobileNetV3 (hard-swish) the map is the Pass
  rule's answer, not a derivation for those nonlinearities.
* Residual additions ``a + b`` of two same-shaped tensors (``+``, ``+=``, ``torch.add``;
  ResNet's ``out += identity``, timm's ``x + shortcut``) split relevance in proportion,
  ``R_a = a R / stab(a + b)`` (zennit's ``Norm`` on its ResNet canonizer's ``Sum``).
  ``+=`` returns a new tensor inside the rule's context (the forward values are the same).
* Average pooling (``avg_pool2d``, ``adaptive_avg_pool2d``, ``mean``) also uses ``Norm``;
  max pooling, padding, flattening and dropout use their gradient (winner takes all).

The model is called through a :class:`~torch.overrides.TorchFunctionMode`: no module is
swapped, no weight changed, no hook added, so nothing can be left behind. For a
:class:`~convscope.models.ImageClassifier` the relevance is taken at the normalised input
(the per-pixel affine normalisation passes relevance unchanged) and the z^B box is the
normalised [0, 1]. Cost in convolutions, against the two of a forward+backward (its conv and
one transposed conv): epsilon 2 (the forward and one transposed conv); gamma 3 where the layer's
input is >= 0 and no relevance reaches a negative output (it feeds a ReLU / ReLU6, checked on the
relevance), since every output that counts then takes the one weight ``W + gamma W+`` (its
forward, ``|W| x`` for the denominator, one transposed conv), otherwise 4 (zennit's generalised
gamma takes ``W + gamma W-`` at negative outputs and for negative inputs: a second transposed conv);
alpha1beta0 with inputs >= 0: 3; alpha2beta1: 4 (a positive and a negative normaliser at every
output, two weights ``W+`` / ``W-`` on two different signals); z^B on the stem: 3, flat: 2
(:meth:`Rule._signed`, :meth:`Rule._box`; measured in ``benchmarks/lrp.py``).
Deviation: conv2d and linear only (conv1d/3d and transposed convs pass their gradient).
``Conv2dSame`` pads with zeros before its conv, so z^B sees the box at the padding too.
"""

from __future__ import annotations

__all__ = ["composite_rules", "COMPOSITES", "lrp", "LRPRecord", "Rule", "stabilize"]

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ConvscopeError
from ..targets import resolve_target, target_score
from .registry import METHODS

COMPOSITES = ("epsilon_gamma_box", "epsilon_alpha2_beta1_flat", "epsilon", "gamma", "alpha1beta0", "alpha2beta1")


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with sign(+0) = +1 (never divides by zero); one new tensor."""
    return torch.copysign(torch.tensor(epsilon, dtype=z.dtype, device=z.device), z).add_(z)


def _ratio(relevance: torch.Tensor, z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``relevance / stabilize(z, epsilon)``, divided in place in the stabilised buffer."""
    denominator = stabilize(z, epsilon)
    if denominator.shape != relevance.shape:
        return relevance / denominator
    return torch.div(relevance, denominator, out=denominator)


@dataclass
class _Affine:
    """One conv2d/linear call: its weight, bias and geometry, with forward and transposed maps.

    ``scale`` is the per-output-channel factor of a BatchNorm folded into the call; the folded
    weight (:attr:`weight`, ``call_weight * scale``) is only made when a rule needs it (the
    epsilon rule scales the relevance instead where that is the smaller tensor)."""

    kind: str
    call_weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    scale: torch.Tensor | None = None

    @functools.cached_property
    def weight(self) -> torch.Tensor:
        if self.scale is None:
            return self.call_weight
        return self.call_weight * self.scale.view(-1, *([1] * (self.call_weight.ndim - 1)))

    @functools.cached_property
    def magnitude(self) -> torch.Tensor:
        """``|weight|``, made once per call of the rule."""
        return self.weight.abs()

    def fold(self, scale: torch.Tensor, bias: torch.Tensor) -> _Affine:
        """This call with a BatchNorm folded in: weight times ``scale`` per output channel, ``bias``."""
        return _Affine(self.kind, self.call_weight, bias, self.stride, self.padding, self.dilation, self.groups, scale)

    def apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "linear":
            return F.linear(x, weight, bias)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def transpose(self, s: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """W^T s: the input gradient of the map for the layer's input ``x``, whose shape and layout
        it takes (its values are not read). A real tensor, not an expanded one: the convolution
        backends copy a strided placeholder into a full input-sized buffer first."""
        if self.kind == "linear":
            return s @ weight
        return torch.ops.aten.convolution_backward(
            s,
            x,
            weight,
            None,
            self.stride,
            self.padding,
            self.dilation,
            False,
            [0, 0],
            self.groups,
            [True, False, False],
        )[0]

    def transpose_weight(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``weight^T s``; with a folded BatchNorm, its scale multiplies ``s`` (in place: ``s`` is the
        caller's buffer) instead of the weight when ``s`` has fewer elements."""
        if self.scale is not None and "weight" not in self.__dict__ and s.numel() < self.call_weight.numel():
            return self.transpose(s.mul_(self.bias_shape(self.scale)), self.call_weight, x)
        return self.transpose(s, self.weight, x)

    def transpose_pair(
        self, s: torch.Tensor, first: torch.Tensor, second: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(first^T s, second^T s): one transposed map of the two weights side by side along the
        input channels when the layer is ungrouped, two otherwise."""
        if self.groups != 1:
            return self.transpose(s, first, x), self.transpose(s, second, x)
        both = self.transpose(
            s, torch.cat([first, second], dim=1), x.new_empty(x.shape[0], 2 * x.shape[1], *x.shape[2:])
        )
        return both[:, : x.shape[1]], both[:, x.shape[1] :]

    def per_input(self, values: torch.Tensor) -> torch.Tensor:
        """Per-input-channel values (C_in numbers, or one) laid out like the weight's input axis."""
        count, width = self.call_weight.shape[:2]
        values = values.reshape(-1).to(self.call_weight)
        if values.numel() == 1:
            values = values.expand(width * self.groups)
        if values.numel() != width * self.groups:
            raise ConvscopeError(f"the z^B box has {values.numel()} values for {width * self.groups} input channels")
        grouped = values.view(self.groups, 1, width).expand(self.groups, count // self.groups, width)
        return grouped.reshape(count, width, *([1] * (self.call_weight.ndim - 2)))

    def bias_shape(self, bias: torch.Tensor) -> torch.Tensor:
        return bias if self.kind == "linear" else bias[:, None, None]


@dataclass(frozen=True)
class Rule:
    """A layer rule: ``name`` in epsilon, gamma, alphabeta, zbox, flat, with its parameters."""

    name: str
    epsilon: float = 1e-6
    gamma: float = 0.25
    alpha: float = 1.0
    beta: float = 0.0
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    def propagate(self, layer: _Affine, x: torch.Tensor, z: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        if self.name == "epsilon":
            return layer.transpose_weight(_ratio(relevance, z, self.epsilon), x).mul_(x)
        if self.name == "flat":
            ones = torch.ones_like(layer.call_weight)
            denominator = layer.apply(torch.ones_like(x[:1]), ones)
            return layer.transpose(_ratio(relevance, denominator, self.epsilon), ones, x)
        if self.name == "zbox":
            return self._box(layer, x, z, relevance)
        if self.name in ("gamma", "alphabeta"):
            return self._signed(layer, x, z, relevance)
        raise ConvscopeError(f"unknown LRP rule {self.name!r}")

    def _box(self, layer: _Affine, x: torch.Tensor, z: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        """z^B with a box constant per input channel (pixels in [0, 1] through a per-channel
        normalisation): ``W+ l + W- h`` is one weight ``V`` scaled per input channel, so the
        denominator's box term is ``V`` on a batch-1 image of ones and the input relevance
        ``x ⊙ W^T s - V^T s`` comes from one transposed map of ``[W, V]``."""
        weight, bias = layer.weight, layer.bias
        low = layer.per_input(self.low if self.low is not None else torch.zeros(1))
        high = layer.per_input(self.high if self.high is not None else torch.ones(1))
        box = weight.clamp(min=0) * low + weight.clamp(max=0) * high
        shift = layer.apply(torch.ones_like(x[:1]), box, bias)  # the biases cancel: z - b - (W+ l + W- h)
        s = _ratio(relevance, z - shift, self.epsilon)
        through, boxed = layer.transpose_pair(s, weight, box, x)
        return (x * through).sub_(boxed)

    def _signed(self, layer: _Affine, x: torch.Tensor, z: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        """gamma and alpha-beta for inputs of any sign, from one extra conv ``Q = |W| |x|``.

        The positive and negative contributions to an output are ``P = (Q + Wx) / 2`` and
        ``N = (Wx - Q) / 2`` (a product ``w x`` is positive exactly when ``|w||x| = wx``), and
        ``x ⊙ d(P a + N b)/dx = x ⊙ W^T (a + b) / 2 + |x| ⊙ |W|^T (a - b) / 2``: one forward conv and
        two transposed convs whatever the inputs' signs (zennit runs each weight on x+ and x-).
        gamma: ``z_a = z + gamma (P + b+)`` for outputs > 0 and ``z_b = z + gamma (N + b-)`` for
        outputs < 0 share one denominator ``(1 + gamma/2) z + sign(z) gamma/2 (Q + |b|)``.
        alpha-beta: ``alpha R / (P + b+) - beta R / (N + b-)``, both at every output.
        Non-negative inputs (after a ReLU / ReLU6) give ``x ⊙ (W^T u + |W|^T v)``, and alpha1beta0
        there needs a single transposed conv of ``W + |W| = 2 W+``; so does gamma (``W + c |W|``,
        ``c = (gamma/2) / (1 + gamma/2)``) when no relevance reaches a negative output."""
        weight, bias = layer.weight, layer.bias
        nonnegative = bool(x.min() >= 0)
        magnitude = x if nonnegative else x.abs()
        spread = layer.apply(magnitude, layer.magnitude)  # Q, then Q + |b|
        if bias is not None:
            spread.add_(layer.bias_shape(bias.abs()))
        if self.name == "gamma":
            half = self.gamma / 2
            # the denominator divided by (1 + gamma/2), so a = R / denominator carries W^T's factor
            denominator = spread.mul_(half / (1 + half)).add_(self.epsilon / (1 + half)).copysign_(z).add_(z)
            a = torch.div(relevance, denominator, out=denominator)
            if nonnegative and not torch.where(torch.signbit(z), relevance, 0).any():
                # no relevance at a negative output (the layer feeds a ReLU): every output that counts
                # takes W + gamma W+, here divided by (1 + gamma/2): one transposed conv of W + c |W|
                return layer.transpose(a, torch.add(weight, layer.magnitude, alpha=half / (1 + half)), x).mul_(x)
            b = a.abs().copysign_(relevance).mul_(half / (1 + half))  # = a sign(z) (gamma/2) / (1 + gamma/2)
        else:
            # 2 (P + b+) = Q + Wx + b + |b| = z + (Q + |b|),  2 (N + b-) = z - (Q + |b|); the halves cancel
            a = _ratio(relevance, z + spread, 2 * self.epsilon).mul_(self.alpha)
            if self.beta == 0 and nonnegative:
                return layer.transpose(a, weight + layer.magnitude, x).mul_(x)
            b = a if self.beta == 0 else _ratio(relevance, z - spread, 2 * self.epsilon).mul_(-self.beta)
            a, b = (a, b) if self.beta == 0 else (a + b, a.sub_(b))
        through, spread_back = layer.transpose(a, weight, x), layer.transpose(b, layer.magnitude, x)
        if nonnegative:
            return through.add_(spread_back).mul_(x)
        return through.mul_(x).addcmul_(magnitude, spread_back)


def composite_rules(
    name: str, epsilon: float = 1e-6, gamma: float = 0.25, low=None, high=None, stabilizer: float = 1e-6
) -> Callable[[str, bool], Rule]:
    """``(layer kind, is first layer) -> Rule`` for a composite name in :data:`COMPOSITES`."""
    eps = Rule("epsilon", epsilon=epsilon)
    stable = stabilizer  # zennit's 1e-6 for the non-epsilon rules
    if name == "epsilon_gamma_box":
        return lambda kind, first: (
            Rule("zbox", epsilon=stable, low=low, high=high)
            if first and kind == "conv"
            else Rule("gamma", epsilon=stable, gamma=gamma)
            if kind == "conv"
            else eps
        )
    if name == "epsilon_alpha2_beta1_flat":
        return lambda kind, first: (
            Rule("flat", epsilon=stable)
            if first
            else Rule("alphabeta", epsilon=stable, alpha=2.0, beta=1.0)
            if kind == "conv"
            else eps
        )
    if name == "epsilon":
        return lambda kind, first: eps
    if name == "gamma":
        return lambda kind, first: Rule("gamma", epsilon=stable, gamma=gamma)
    if name in ("alpha1beta0", "alpha2beta1"):
        alpha, beta = (1.0, 0.0) if name == "alpha1beta0" else (2.0, 1.0)
        return lambda kind, first: Rule("alphabeta", epsilon=stable, alpha=alpha, beta=beta)
    raise ConvscopeError(f"unknown LRP rule/composite {name!r}; known: {', '.join(COMPOSITES)}")


class _Relevance(torch.autograd.Function):
    """Forward: the layer's ordinary output; backward: the rule's relevance for the input."""

    @staticmethod
    def forward(ctx, x, compute, propagate):
        value = compute()
        ctx.propagate = propagate
        ctx.save_for_backward(x, value)
        return value

    @staticmethod
    def backward(ctx, relevance):
        x, value = ctx.saved_tensors
        return ctx.propagate(x, value, relevance), None, None


class _Pass(torch.autograd.Function):
    """Forward: the activation; backward: relevance unchanged."""

    @staticmethod
    def forward(ctx, x, compute):
        return compute()

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


class _Norm(torch.autograd.Function):
    """Sum-like layers (pooling, mean): ``R_in = x * d(out)/dx^T (R / stab(out))``."""

    @staticmethod
    def forward(ctx, x, function, epsilon):
        ctx.function, ctx.epsilon = function, epsilon
        value = function(x)
        ctx.save_for_backward(x)
        return value

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            inputs = x.detach().requires_grad_(True)
            out = ctx.function(inputs)
            (grad,) = torch.autograd.grad(out, inputs, relevance / stabilize(out.detach(), ctx.epsilon))
        return x * grad, None, None


class _Sum(torch.autograd.Function):
    """``a + b`` forward; relevance split in proportion to the summands backward."""

    @staticmethod
    def forward(ctx, a, b, epsilon):
        ctx.epsilon = epsilon
        total = a + b
        ctx.save_for_backward(a, b, total)
        return total

    @staticmethod
    def backward(ctx, relevance):
        a, b, total = ctx.saved_tensors
        share = _ratio(relevance, total, ctx.epsilon)
        return a * share, share.mul_(b), None


def _argument(args, kwargs, index, name, default):
    return args[index] if len(args) > index else kwargs.get(name, default)


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


_ACTIVATIONS = {
    F.relu,
    torch.relu,
    torch.Tensor.relu,
    F.relu_,
    torch.relu_,
    torch.Tensor.relu_,
    F.relu6,
    F.hardtanh,
    F.hardtanh_,
    F.hardswish,
    F.silu,
    F.gelu,
    F.leaky_relu,
    F.elu,
    F.mish,
    F.hardsigmoid,
    torch.sigmoid,
    torch.Tensor.sigmoid,
    torch.tanh,
    torch.Tensor.tanh,
}
_ADDS = {
    torch.add,
    torch.Tensor.add,
    torch.Tensor.__add__,
    torch.Tensor.__radd__,
    torch.Tensor.add_,
    torch.Tensor.__iadd__,
}
_MEANS = {torch.mean, torch.Tensor.mean}
_POOLS = {F.adaptive_avg_pool2d, F.avg_pool2d, torch.nn.functional.adaptive_avg_pool1d}


@dataclass
class LRPRecord:
    """What the rule context saw: rule per conv/linear call (in call order), folded BatchNorms."""

    layers: list[str]
    folded: int = 0


class _LRPMode(TorchFunctionMode):
    def __init__(self, rules: Callable[[str, bool], Rule], record: LRPRecord, stabilizer: float = 1e-6):
        super().__init__()
        self.rules, self.record, self.stabilizer = rules, record, stabilizer
        # the last conv/linear call (output, input, layer, rule): a BatchNorm right after it folds into it.
        # Only the last one is kept, so the outputs of the earlier layers are freed as the forward goes on.
        self.last: tuple[torch.Tensor, torch.Tensor, _Affine, Rule] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not args or not isinstance(args[0], torch.Tensor) or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        x = args[0]
        if func is torch.conv2d or func is F.linear:
            if not x.requires_grad:
                return func(*args, **kwargs)
            if func is F.linear:
                layer = _Affine("linear", args[1], _argument(args, kwargs, 2, "bias", None))
            else:
                padding = _argument(args, kwargs, 4, "padding", 0)
                weight = args[1]
                dilation = _pair(_argument(args, kwargs, 5, "dilation", 1))
                if isinstance(padding, str):
                    if padding == "valid":
                        padding = 0
                    elif all(k % 2 == 1 for k in weight.shape[-2:]):
                        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, weight.shape[-2:]))
                    else:
                        return func(*args, **kwargs)
                layer = _Affine(
                    "conv",
                    weight,
                    _argument(args, kwargs, 2, "bias", None),
                    _pair(_argument(args, kwargs, 3, "stride", 1)),
                    _pair(padding),
                    dilation,
                    int(_argument(args, kwargs, 6, "groups", 1)),
                )
            rule = self.rules(layer.kind, not self.record.layers)
            self.record.layers.append(f"{layer.kind}:{rule.name}")
            out = _Relevance.apply(
                x,
                lambda: func(*args, **kwargs),
                lambda xx, z, r, layer=layer, rule=rule: rule.propagate(layer, xx, z, r),
            )
            self.last = (out, x, layer, rule)
            return out
        if func is F.batch_norm:
            entry = self.last
            training = bool(_argument(args, kwargs, 5, "training", False))
            mean, var = (
                _argument(args, kwargs, 1, "running_mean", None),
                _argument(args, kwargs, 2, "running_var", None),
            )
            if entry is None or entry[0] is not x or training or mean is None or var is None:
                return _Pass.apply(x, lambda: func(*args, **kwargs)) if x.requires_grad else func(*args, **kwargs)
            _, inputs, layer, rule = entry
            self.last = None
            gain, shift = _argument(args, kwargs, 3, "weight", None), _argument(args, kwargs, 4, "bias", None)
            eps = float(_argument(args, kwargs, 7, "eps", 1e-5))
            scale = torch.rsqrt(var + eps) * (gain if gain is not None else 1.0)
            bias = layer.bias if layer.bias is not None else torch.zeros_like(mean)
            folded = layer.fold(scale, (bias - mean) * scale + (shift if shift is not None else 0.0))
            self.record.folded += 1
            value = x.detach()
            return _Relevance.apply(
                inputs, lambda: func(value, *args[1:], **kwargs), lambda xx, z, r: rule.propagate(folded, xx, z, r)
            )
        if func in _ACTIVATIONS and x.requires_grad:
            settings = {k: v for k, v in kwargs.items() if k != "inplace"}
            plain = {
                F.relu_: F.relu,
                torch.relu_: torch.relu,
                torch.Tensor.relu_: torch.relu,
                F.hardtanh_: F.hardtanh,
            }.get(func, func)
            if plain is F.hardtanh or plain is F.relu6 or plain is F.relu or plain is F.leaky_relu or plain is F.elu:
                positional = list(args)
                # drop a positional inplace flag (F.hardtanh(x, lo, hi, inplace), F.relu(x, inplace), ...)
                limit = {F.hardtanh: 3, F.relu6: 1, F.relu: 1, F.leaky_relu: 2, F.elu: 2}[plain]
                args = tuple(positional[:limit])
            return _Pass.apply(x, lambda: plain(*args, **settings))
        if (
            func in _ADDS
            and len(args) > 1
            and isinstance(args[1], torch.Tensor)
            and x.requires_grad
            and args[1].requires_grad
            and args[1].shape == x.shape
            and kwargs.get("alpha", 1) == 1
            and len(args) == 2
        ):
            return _Sum.apply(x, args[1], self.stabilizer)
        if (func in _POOLS or func in _MEANS) and x.requires_grad:
            rest = args[1:]
            return _Norm.apply(x, lambda value: func(value, *rest, **kwargs), self.stabilizer)
        return func(*args, **kwargs)


def _network_and_inputs(model, x):
    from ..models import ImageClassifier

    if isinstance(model, ImageClassifier):
        normalize = model.normalize
        corners = torch.stack([torch.zeros_like(x[0, :, :1, :1]), torch.ones_like(x[0, :, :1, :1])])
        low, high = normalize(corners)  # (C, 1, 1) each: the box is the same at every pixel
        return model.network, normalize(x), low[None], high[None]
    return model, x, torch.zeros_like(x[:1, :, :1, :1]), torch.ones_like(x[:1, :, :1, :1])


@METHODS.register(kind="relevance")
def lrp(
    model,
    x,
    target=None,
    rule: str = "epsilon_gamma_box",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
    channels: str | None = None,
) -> torch.Tensor:
    """Layer-wise relevance propagation (Bach et al. 2015) with a zennit-style composite.

    Args:
        rule: a composite or single rule of :data:`COMPOSITES` (see the module docstring).
        epsilon: the epsilon of the epsilon rule; gamma: the gamma of the gamma rule.
        stabilizer: the denominator shift of the other rules, sums and pooling (zennit's 1e-6).
        channels: ``None`` (per channel), ``"sum"`` (relevance of the pixel) or ``"max"``.

    The relevance starts as the target's logit (``logits * d score/d logits`` for a
    callable target), so with conserving rules the map sums to it (minus what biases and
    stabilisers absorb). Equals zennit 0.5 (``EpsilonGammaBox``, ``EpsilonAlpha2Beta1Flat``
    with its VGG/ResNet canonizers) on ReLU networks of conv2d/linear/BatchNorm layers.

    Returns:
        relevance (N, 3, H, W), or (N, 1, H, W) with ``channels``.
    """
    from .gradients import reduce_channels

    network, inputs, low, high = _network_and_inputs(model, x.detach())
    rules = composite_rules(rule, epsilon, gamma, low, high, stabilizer)
    inputs = inputs.detach().requires_grad_(True)
    record = LRPRecord([])
    with _LRPMode(rules, record, stabilizer):
        logits = network(inputs)
    if not record.layers:
        raise ConvscopeError("lrp: the model makes no conv2d/linear call that depends on the input")
    labels = getattr(model, "labels", None)
    if callable(target) and not isinstance(target, torch.Tensor):
        with torch.enable_grad():
            free = logits.detach().requires_grad_(True)
            (slope,) = torch.autograd.grad(target_score(target, free, labels).sum(), free)
        start = slope * logits.detach()
    else:
        ids = resolve_target(target, logits, labels)
        start = torch.zeros_like(logits).scatter_(1, ids[:, None], logits.detach().gather(1, ids[:, None]))
    (relevance,) = torch.autograd.grad(logits, inputs, start)
    return reduce_channels(relevance, channels)
