"""The Shapley family: DeepLIFT (Shrikumar et al. 2017, rescale rule), GradientSHAP (Lundberg &
Lee 2017, expected gradients), and KernelSHAP (Lundberg & Lee 2017) / LIME (Ribeiro et al. 2016)
on SLIC superpixels (Achanta et al. 2012, scikit-image).

Conventions: the score is the class logit of the class chosen on the clean image; the
reference ("absent") input is the black image in convscope's [0, 1] input space (captum's
default baseline 0 on the same model), or any baseline of
:func:`~convscope.attribution.integrated.make_baseline`. Perturbed / interpolated copies are
evaluated ``batch_size`` at a time over all images together.
"""

from __future__ import annotations

__all__ = [
    "coalition_values",
    "deeplift",
    "gradient_shap",
    "gradient_shap_from_draws",
    "kernel_shap",
    "lime",
    "lime_weights",
    "shapley_kernel_regression",
    "superpixels",
    "weighted_ridge",
]

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ConvscopeError
from ..registry import renamed_options
from ..targets import target_score
from .gradients import target_gradient, reduce_channels
from .integrated import make_baseline
from .noise import fixed_targets
from .registry import METHODS


# ---------------------------------------------------------------- DeepLIFT
# elementwise nonlinearity -> position of its ``inplace`` argument (None: it has none)
_NONLINEAR = {
    F.relu: 1,
    F.relu6: 1,
    F.hardtanh: 3,
    F.elu: 2,
    F.leaky_relu: 2,
    F.silu: 1,
    F.hardswish: 1,
    F.hardsigmoid: 1,
    F.mish: 1,
    F.selu: 1,
    F.celu: 2,
    F.gelu: None,
    F.softplus: None,
    torch.sigmoid: None,
    torch.tanh: None,
    torch.relu: None,
    torch.Tensor.sigmoid: None,
    torch.Tensor.tanh: None,
    torch.Tensor.relu: None,
}
# in-place variants -> their out-of-place function (same other arguments)
_INPLACE = {
    torch.relu_: torch.relu,
    torch.Tensor.relu_: torch.relu,
    F.relu_: torch.relu,
    F.hardtanh_: F.hardtanh,
    torch.sigmoid_: torch.sigmoid,
    torch.Tensor.sigmoid_: torch.sigmoid,
    torch.tanh_: torch.tanh,
    torch.Tensor.tanh_: torch.tanh,
    F.elu_: F.elu,
    F.leaky_relu_: F.leaky_relu,
}


def _pure(func, args, kwargs):
    """(out-of-place function of the input, whether the call was in place), or (None, False)."""
    if func in _INPLACE:
        base, rest = _INPLACE[func], args[1:]
        return (lambda t: base(t, *rest, **kwargs)), True
    if func not in _NONLINEAR:
        return None, False
    index = _NONLINEAR[func]
    extra = {k: v for k, v in kwargs.items() if k != "inplace"}
    if index is None:
        rest, inplace = args[1:], False
    else:
        rest = args[1:index]
        inplace = bool(args[index]) if len(args) > index else bool(kwargs.get("inplace", False))
    return (lambda t: func(t, *rest, **extra)), inplace


class _Multiplier(torch.autograd.Function):
    """Forward: the nonlinearity's value ``y`` (written into ``z`` for in-place calls);
    backward: the incoming gradient times the DeepLIFT multiplier ``m``."""

    @staticmethod
    def forward(ctx, z, y, m, inplace):
        ctx.save_for_backward(m)
        if inplace:
            z.copy_(y)
            ctx.mark_dirty(z)
            return z
        return y

    @staticmethod
    def backward(ctx, grad):
        (m,) = ctx.saved_tensors
        return grad * m, None, None, None


_MAX_POOLS = {F.max_pool2d, torch.max_pool2d}
_POOL_ARGUMENTS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")


def _pool_settings(args, kwargs) -> tuple[list, list, list, list, bool] | None:
    """(kernel, stride, padding, dilation, ceil_mode) of a 2-d max-pool call, or None for
    ``return_indices=True`` (left to its gradient)."""
    values = dict(zip(_POOL_ARGUMENTS, args[1:]), **{k: v for k, v in kwargs.items() if k in _POOL_ARGUMENTS})
    if kwargs.get("return_indices", False) or (len(args) > 6 and args[6]):
        return None

    def pair(value):
        return list(value) if isinstance(value, (tuple, list)) else [value, value]

    kernel = pair(values["kernel_size"])
    stride = pair(values.get("stride") or kernel)
    return (
        kernel,
        stride,
        pair(values.get("padding", 0)),
        pair(values.get("dilation", 1)),
        bool(values.get("ceil_mode", False)),
    )


class _MaxPoolMultiplier(torch.autograd.Function):
    """DeepLIFT's max-pooling rule (captum's ``maxpool``, from Shrikumar et al. 2017): the output
    difference ``y - y_ref`` is split as ``(max(y, y_ref) - y_ref) + (y - max(y, y_ref))`` and each
    part goes back to the input's and the reference's winning position; the multiplier of an input
    is what it received divided by its own difference (the gradient where that is below ``eps``)."""

    @staticmethod
    def forward(ctx, z, y, indices, settings, count, eps):
        ctx.save_for_backward(z, y, indices)
        ctx.settings, ctx.count, ctx.eps = settings, count, eps
        return y

    @staticmethod
    def backward(ctx, grad):
        z, y, indices = ctx.saved_tensors
        n, eps = ctx.count, ctx.eps

        def unpool(values):
            return torch.ops.aten.max_pool2d_with_indices_backward(values, z, *ctx.settings, indices)

        top = torch.maximum(y[:n], y[n:])
        shares = torch.cat([top - y[n:], y[:n] - top])
        received = unpool(torch.cat([grad[:n], grad[:n]]) * shares)
        received = received[:n] + received[n:]
        plain = unpool(grad)
        delta = z[:n] - z[n:]
        small = delta.abs() < eps
        multiplied = torch.where(small, plain[:n], received / torch.where(small, torch.ones_like(delta), delta))
        return torch.cat([multiplied, plain[n:]]), None, None, None, None, None


class _RescaleMode(TorchFunctionMode):
    """DeepLIFT's rescale rule for every elementwise nonlinearity, and its max-pooling rule, called
    on a (2N, ...) batch whose first N rows are the inputs and last N rows their references."""

    def __init__(self, count: int, eps: float):
        super().__init__()
        self.count, self.eps, self.calls = count, eps, 0

    def _paired(self, z) -> bool:
        return (
            isinstance(z, torch.Tensor)
            and torch.is_grad_enabled()
            and z.ndim > 0
            and z.shape[0] == 2 * self.count
            and z.requires_grad
        )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        z = args[0] if args else None
        if func in _MAX_POOLS and self._paired(z) and z.ndim == 4:
            settings = _pool_settings(args, kwargs)
            if settings is not None:
                self.calls += 1
                with torch.no_grad():
                    y, indices = F.max_pool2d(z.detach(), *settings, return_indices=True)
                return _MaxPoolMultiplier.apply(z, y, indices, settings, self.count, self.eps)
        pure, inplace = _pure(func, args, kwargs)
        if pure is None or not self._paired(z):
            return func(*args, **kwargs)
        self.calls += 1
        with torch.no_grad():
            y = pure(z.detach())
            delta_in = z[: self.count] - z[self.count :]
            delta_out = y[: self.count] - y[self.count :]
            delta_in, delta_out = torch.cat([delta_in, delta_in]), torch.cat([delta_out, delta_out])
            small = delta_in.abs() < self.eps
            m = delta_out / torch.where(small, torch.ones_like(delta_in), delta_in)
        if small.any():  # the derivative where the input barely changed (captum's rule)
            with torch.enable_grad():
                probe = z.detach().requires_grad_(True)
                (slope,) = torch.autograd.grad(pure(probe).sum(), probe)
            m = torch.where(small, slope, m)
        return _Multiplier.apply(z, y, m, inplace)


@METHODS.register(kind="shapley")
def deeplift(
    model,
    x,
    target=None,
    baseline="black",
    channels: str | None = None,
    eps: float = 1e-10,
    blur_sigma: float = 10.0,
    return_gap: bool = False,
):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017): ``(x - x_ref) ⊙ m``.

    The input and its reference run as one batch; every elementwise nonlinearity (ReLU, ReLU6 /
    hardtanh, sigmoid, tanh, SiLU, GELU, hardswish, ELU, ... as modules *or* functional calls,
    seen by a :class:`~torch.overrides.TorchFunctionMode`) passes back ``Δy / Δx`` instead of its
    derivative (the derivative where ``|Δx| < eps``, as captum). Linear operations (convolutions,
    eval BatchNorm, pooling by averaging, additions) keep their gradient, which is their exact
    multiplier, so the attributions sum to ``f(x) - f(x_ref)`` (summation-to-delta) on such
    networks. 2-d max-pooling (``nn.MaxPool2d`` or ``F.max_pool2d``) uses captum's max-pool rule,
    which keeps summation-to-delta: the output difference goes back to the winning positions of
    the input and of the reference (overlapping windows accumulate, where captum's unpooling
    keeps one of the duplicates). Products of two activations (squeeze-excitation gates) take
    their plain gradient. captum's ``DeepLift`` only rewrites
    ``nn.ReLU``-type *modules*: on ReLU6 (EfficientNet-Lite) it back-propagates the plain
    derivative, and its sums miss ``f(x) - f(x_ref)``.

    Returns:
        (N, 3, H, W) (``channels="sum"`` / ``"max"`` -> (N, 1, H, W)), and with ``return_gap``
        the summation gap ``sum(attribution) - (f(x) - f(x_ref))`` per image.
    """
    ids = fixed_targets(model, x, target)
    labels = getattr(model, "labels", None)
    reference = make_baseline(x, baseline, blur_sigma)
    count = x.shape[0]
    both = torch.cat([x, reference]).detach().requires_grad_(True)
    mode = _RescaleMode(count, eps)
    with mode:
        logits = model(both)
    if mode.calls == 0:
        import warnings

        warnings.warn(
            "deeplift: the model calls no elementwise nonlinearity it knows; this is gradient x input", stacklevel=3
        )
    scores = target_score(ids, logits[:count], labels)
    (grad,) = torch.autograd.grad(scores.sum(), both)
    attribution = (x - reference) * grad[:count]
    if not return_gap:
        return reduce_channels(attribution, channels)
    with torch.no_grad():
        reference_scores = target_score(ids, logits[count:].detach(), labels)
    gap = attribution.sum(dim=(1, 2, 3)) - (scores.detach() - reference_scores)
    return reduce_channels(attribution, channels), gap


# ---------------------------------------------------------------- GradientSHAP
def _generator(device, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def gradient_shap_from_draws(
    model, inputs: torch.Tensor, baselines: torch.Tensor, alphas: torch.Tensor, targets, batch_size: int = 32
) -> torch.Tensor:
    """GradientSHAP terms ``(x' - b) ⊙ grad f(b + alpha (x' - b))`` for given rows of noisy inputs
    ``x'``, baselines ``b`` and ``alpha`` (M rows each; ``targets``: ids ``Tensor[M]`` or a callable),
    evaluated ``batch_size`` rows at a time. The expectation over the draws is GradientSHAP."""
    terms = torch.empty_like(inputs)
    for start in range(0, inputs.shape[0], max(1, batch_size)):
        part = slice(start, start + batch_size)
        a = alphas[part].view(-1, 1, 1, 1)
        points = baselines[part] + a * (inputs[part] - baselines[part])
        chunk_targets = targets[part] if isinstance(targets, torch.Tensor) else targets
        terms[part] = (inputs[part] - baselines[part]) * target_gradient(model, points, chunk_targets)
    return terms


@METHODS.register(kind="shapley", stochastic=True, quick={"samples": 8, "seed": 0})
@renamed_options(n="samples")
def gradient_shap(
    model,
    x,
    target=None,
    baselines="black",
    samples: int = 16,
    stdev: float = 0.0,
    batch_size: int = 32,
    channels: str | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """GradientSHAP (Lundberg & Lee 2017; expected gradients, Erion et al. 2021), as captum's
    ``GradientShap``: the mean over ``samples`` draws of ``(x' - b) ⊙ grad f(b + alpha (x' - b))`` with
    ``b`` drawn uniformly from ``baselines``, ``alpha ~ U(0, 1)`` and ``x' = x + N(0, stdev^2)``.

    Args:
        baselines: a (B, 3, H, W) tensor (the reference distribution, e.g. training images),
            or ``"black"`` / ``"blur"`` / ``"uniform"`` (one baseline per image, see ``make_baseline``).
        samples: draws per image (``n`` is its old name, still accepted with a deprecation warning); stdev: absolute noise in [0, 1] pixel units (captum's ``stdevs``, 0 by default).
        seed: seeds a generator of its own (the global RNG is left alone).
    """
    if samples < 1 or stdev < 0:
        raise ConvscopeError(f"gradient_shap needs samples >= 1 and stdev >= 0, got samples={samples}, stdev={stdev}")
    ids = fixed_targets(model, x, target)
    generator = _generator(x.device, seed)
    count = x.shape[0]
    rows = torch.arange(count, device=x.device).repeat_interleave(samples)
    if isinstance(baselines, torch.Tensor):
        pool = baselines.to(x.device, x.dtype)
        if pool.ndim == 3:
            pool = pool[None]
        if pool.shape[1:] != x.shape[1:]:
            raise ConvscopeError(f"baselines of shape {tuple(pool.shape)} do not fit x {tuple(x.shape)}")
        chosen = pool[torch.randint(pool.shape[0], (count * samples,), generator=generator, device=x.device)]
    else:
        chosen = make_baseline(x, baselines, seed=seed)[rows]
    inputs = x[rows]
    if stdev > 0:
        inputs = inputs + stdev * torch.randn(inputs.shape, generator=generator, device=x.device, dtype=x.dtype)
    alphas = torch.rand(count * samples, generator=generator, device=x.device, dtype=x.dtype)
    targets = ids[rows] if isinstance(ids, torch.Tensor) else ids
    terms = gradient_shap_from_draws(model, inputs, chosen, alphas, targets, batch_size)
    return reduce_channels(terms.view(count, samples, *x.shape[1:]).mean(dim=1), channels)


# ---------------------------------------------------------------- superpixels: KernelSHAP and LIME
def superpixels(x: torch.Tensor, n_segments: int = 50, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels (Achanta et al. 2012; scikit-image ``slic``) of each image: labels
    ``LongTensor[N, H, W]`` numbered 0 .. M_i - 1 per image, on ``x``'s device."""
    from skimage.segmentation import slic

    labels = []
    for image in x.detach().cpu().permute(0, 2, 3, 1).double().numpy():
        segments = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
        _, segments = np.unique(segments, return_inverse=True)  # consecutive ids
        labels.append(torch.from_numpy(segments.reshape(image.shape[:2]).astype(np.int64)))
    return torch.stack(labels).to(x.device)


def _check_segments(segments, x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    if segments is None:
        return superpixels(x, n_segments, compactness)
    segments = torch.as_tensor(segments, device=x.device).long()
    if segments.ndim == 2:
        segments = segments.expand(x.shape[0], -1, -1)
    if segments.shape != (x.shape[0], *x.shape[-2:]) or segments.min() < 0:
        raise ConvscopeError(
            f"segments must be non-negative labels of shape (N, H, W) = "
            f"{(x.shape[0], *x.shape[-2:])}, got {tuple(segments.shape)}"
        )
    return segments


def coalition_values(model, x, reference, segments, coalitions: list[torch.Tensor], ids, batch_size: int = 64):
    """Scores of every coalition: image i with the superpixels where ``coalitions[i][s] = 1`` kept
    and the others taken from ``reference``. ``coalitions[i]``: (S_i, M_i) in {0, 1}; returns
    a list of ``Tensor[S_i]``, evaluated ``batch_size`` perturbed images at a time."""
    labels = getattr(model, "labels", None)
    # (image, first row, last row) runs of at most batch_size rows, packed into chunks
    values = [torch.empty(table.shape[0], device=x.device, dtype=x.dtype) for table in coalitions]
    runs = [
        (i, start, min(start + batch_size, table.shape[0]))
        for i, table in enumerate(coalitions)
        for start in range(0, table.shape[0], max(1, batch_size))
    ]
    chunk: list[tuple[int, int, int]] = []
    with torch.no_grad():
        for run in runs + [None]:
            size = sum(stop - start for _, start, stop in chunk)
            if chunk and (run is None or size + run[2] - run[1] > batch_size):
                perturbed = torch.cat(
                    [
                        reference[i : i + 1]
                        + coalitions[i][start:stop].to(x.dtype)[:, segments[i]][:, None]
                        * (x[i : i + 1] - reference[i : i + 1])
                        for i, start, stop in chunk
                    ]
                )
                if isinstance(ids, torch.Tensor):
                    targets = torch.cat([ids[i : i + 1].expand(stop - start) for i, start, stop in chunk])
                else:
                    targets = ids
                scores = target_score(targets, model(perturbed), labels)
                offset = 0
                for i, start, stop in chunk:
                    values[i][start:stop] = scores[offset : offset + stop - start]
                    offset += stop - start
                chunk = []
            if run is not None:
                chunk.append(run)
    return values


def shapley_kernel_regression(
    coalitions: torch.Tensor,
    values: torch.Tensor,
    full: torch.Tensor,
    empty: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """KernelSHAP's solution (Lundberg & Lee 2017, Theorem 2): weighted least squares of
    ``values - empty`` on the coalitions, constrained to ``sum(phi) = full - empty`` (the infinite
    weights of the full and empty coalitions, enforced exactly by eliminating the last feature).
    ``weights`` default to 1 (coalitions drawn in proportion to the Shapley kernel)."""
    z = coalitions.double()
    y = values.double() - float(empty)
    total = float(full) - float(empty)
    w = torch.ones_like(y) if weights is None else weights.double()
    last = z[:, -1:]
    design = z[:, :-1] - last
    target = y - last[:, 0] * total
    gram = design.T @ (w[:, None] * design)
    rhs = design.T @ (w * target)
    head = torch.linalg.lstsq(gram, rhs[:, None]).solution[:, 0]
    return torch.cat([head, (total - head.sum()).view(1)])


def _kernel_shap_coalitions(features: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``samples`` coalitions of ``features`` players, none empty or full: size s drawn with
    probability proportional to (M - 1) / (s (M - s)), then a uniform subset of that size."""
    sizes = torch.arange(1, features, dtype=torch.float64)
    probabilities = (features - 1) / (sizes * (features - sizes))
    drawn = torch.multinomial(probabilities, samples, replacement=True, generator=generator) + 1
    order = torch.rand(samples, features, generator=generator).argsort(dim=1)
    return (order < drawn[:, None]).long()


def _expand(values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    return values.to(segments.device)[segments]


@METHODS.register(
    kind="shapley", display="signed", unit="Shapley value (logit)", stochastic=True, quick={"samples": 64, "seed": 0}
)
def kernel_shap(
    model,
    x,
    target=None,
    samples: int = 256,
    n_segments: int = 50,
    compactness: float = 10.0,
    baseline="black",
    segments=None,
    batch_size: int = 64,
    seed: int | None = None,
) -> torch.Tensor:
    """KernelSHAP (Lundberg & Lee 2017) on SLIC superpixels: the Shapley values of the superpixels
    for the class logit, a superpixel "absent" when its pixels come from ``baseline`` (black).

    ``samples`` coalitions per image are drawn from the Shapley kernel (sizes with probability
    ∝ (M-1)/(s(M-s)), then uniformly), and :func:`shapley_kernel_regression` solves the
    constrained least squares exactly (captum's ``KernelShap`` approximates the constraint with
    a weight of 1e6 on the full and the empty coalitions and fits an intercept). Each pixel gets
    its superpixel's value; the values of an image sum to ``f(x) - f(baseline)``.

    Args:
        segments: (N, H, W) or (H, W) integer labels to use instead of SLIC (captum's ``feature_mask``).
        n_segments, compactness: SLIC's settings.
    Returns:
        (N, 1, H, W). Cost: ``samples + 2`` forward passes per image.
    """
    if samples < 1:
        raise ConvscopeError(f"kernel_shap needs samples >= 1, got {samples}")
    ids = fixed_targets(model, x, target)
    segments = _check_segments(segments, x, n_segments, compactness)
    reference = make_baseline(x, baseline, seed=seed)
    generator = _generator(torch.device("cpu"), seed)
    tables = []
    for i in range(x.shape[0]):
        features = int(segments[i].max()) + 1
        middle = _kernel_shap_coalitions(features, samples, generator) if features > 1 else torch.empty(0, 1).long()
        tables.append(torch.cat([torch.ones(1, features).long(), torch.zeros(1, features).long(), middle]).to(x.device))
    values = coalition_values(model, x, reference, segments, tables, ids, batch_size)
    heat = torch.zeros(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
    for i, (table, value) in enumerate(zip(tables, values)):
        if table.shape[1] == 1:
            phi = (value[0] - value[1]).view(1).double()
        else:
            phi = shapley_kernel_regression(table[2:], value[2:], value[0], value[1])
        heat[i, 0] = _expand(phi.to(x.dtype), segments[i])
    return heat


def weighted_ridge(features: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """Coefficients of ridge regression with an unpenalised intercept and sample ``weights``
    (scikit-learn ``Ridge(alpha).fit(X, y, sample_weight=w)``'s ``coef_``)."""
    z, y, w = features.double(), values.double(), weights.double()
    total = w.sum()
    z_mean, y_mean = (w[:, None] * z).sum(0) / total, (w * y).sum() / total
    zc, yc = z - z_mean, y - y_mean
    gram = zc.T @ (w[:, None] * zc) + alpha * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return torch.linalg.solve(gram, zc.T @ (w * yc))


def lime_weights(coalitions: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """LIME's proximity ``exp(-D^2 / sigma^2)`` with D the cosine distance between the coalition and
    the all-ones vector (the unperturbed image), as lime's image explainer (distance 1 for the empty one)."""
    z = coalitions.double()
    norm = z.norm(dim=1) * (z.shape[1] ** 0.5)
    cosine = torch.where(norm > 0, z.sum(dim=1) / norm.clamp(min=1e-12), torch.zeros_like(norm))
    return torch.exp(-((1 - cosine) ** 2) / kernel_width**2)


@METHODS.register(
    kind="shapley", display="signed", unit="LIME coefficient (logit)", stochastic=True, quick={"samples": 64, "seed": 0}
)
def lime(
    model,
    x,
    target=None,
    samples: int = 256,
    n_segments: int = 50,
    compactness: float = 10.0,
    kernel_width: float = 0.25,
    alpha: float = 1.0,
    baseline="black",
    segments=None,
    batch_size: int = 64,
    seed: int | None = None,
) -> torch.Tensor:
    """LIME (Ribeiro et al. 2016) on SLIC superpixels: a local weighted linear surrogate of the class logit.

    Coalitions as lime's image explainer: the unperturbed image, then ``samples - 1`` with each
    superpixel kept with probability 1/2 (the others from ``baseline``, black by default; lime
    fills with the superpixel's mean colour). Weights ``exp(-D^2 / kernel_width^2)``, D the cosine
    distance to the all-ones coalition, ``kernel_width`` 0.25 (lime's image default); ridge
    regression with ``alpha`` (lime's ``Ridge(alpha=1)``) and an intercept. lime explains
    probabilities; this explains the logit, as captum ``Lime`` on the same model. (captum's
    default kernel is ``exp(-D^2 / (2 w^2))`` on the input-space distance, and a Lasso.)

    Returns:
        (N, 1, H, W): each pixel its superpixel's coefficient. Cost: ``samples`` forward passes per image.
    """
    if samples < 2:
        raise ConvscopeError(f"lime needs samples >= 2, got {samples}")
    ids = fixed_targets(model, x, target)
    segments = _check_segments(segments, x, n_segments, compactness)
    reference = make_baseline(x, baseline, seed=seed)
    generator = _generator(torch.device("cpu"), seed)
    tables = []
    for i in range(x.shape[0]):
        features = int(segments[i].max()) + 1
        drawn = torch.randint(0, 2, (samples - 1, features), generator=generator)
        tables.append(torch.cat([torch.ones(1, features).long(), drawn]).to(x.device))
    values = coalition_values(model, x, reference, segments, tables, ids, batch_size)
    heat = torch.zeros(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
    for i, (table, value) in enumerate(zip(tables, values)):
        coefficients = weighted_ridge(table, value, lime_weights(table, kernel_width), alpha)
        heat[i, 0] = _expand(coefficients.to(x.dtype), segments[i])
    return heat
