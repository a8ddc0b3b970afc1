"""More class activation maps on the CAM template of :mod:`convscope.attribution.cam`.

Gradient-weighted: HiResCAM (Draelos & Carin 2020), XGrad-CAM (Fu et al. 2020), LayerCAM
(Jiang et al. 2021, with its multi-layer fusion). Gradient-free: Score-CAM (Wang et al.
2020), Ablation-CAM (Desai & Ramaswamy 2020), Eigen-CAM (Muhammad & Yeasin 2020). Whole
network: FullGrad (Srinivas & Fleuret 2019).

Conventions as in :mod:`~convscope.attribution.cam`: any layer with an (N, C, h, w) output
(default: the model's last spatial layer), the pre-softmax class logit as the score, the
(N, 1, h, w) map upsampled bilinearly (``align_corners=False``) to the input and *not*
normalised (pytorch-grad-cam and torchcam min-max scale every map; rendering does it here).
The masked / ablated passes of Score-CAM and Ablation-CAM are batched ``batch_size`` at a
time over all images and channels together.
"""

from __future__ import annotations

__all__ = [
    "ablationcam",
    "eigencam",
    "full_gradient_decomposition",
    "fullgrad",
    "hirescam",
    "layercam",
    "scorecam",
    "xgradcam",
]

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ConvscopeError
from ..hooks import capture
from ..layers import find_layer
from ..targets import resolve_target, target_score
from .cam import _finish, cam_layer, gradient_cam, upsample_map
from .gradients import objective_score
from .registry import METHODS


@gradient_cam()
def hirescam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): ``sum_c dy/dA_c ⊙ A_c``, the gradient kept per position.

    Where Grad-CAM averages the gradient over the map first, HiResCAM multiplies element-wise,
    so on a network whose head is ``Linear(GAP(A))`` the signed map at layer resolution sums
    to the class logit minus its bias (the paper's faithfulness property). ``relu=True``
    (default) applies Grad-CAM's ReLU as pytorch-grad-cam does; ``relu=False`` keeps the sign.
    Signature: :func:`~convscope.attribution.cam.gradient_cam`.
    """
    return grads


@gradient_cam()
def xgradcam(activations: torch.Tensor, grads: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): ``w_c = sum_ab (A_c(a,b) / sum_ab A_c) dy/dA_c(a,b)``.

    The paper's axiom-derived weights (sensitivity and conservation) for ReLU feature maps;
    ``eps`` (1e-7, pytorch-grad-cam's) keeps channels whose activations sum to 0 finite. On
    layers with negative outputs (a BatchNorm without its activation) the normaliser can be
    near 0: pick a post-activation layer there. Then ``relu(sum_c w_c A_c)``.
    Signature: :func:`~convscope.attribution.cam.gradient_cam`.
    """
    total = activations.sum(dim=(2, 3), keepdim=True)
    return (grads * activations / (total + eps)).sum(dim=(2, 3), keepdim=True)


@gradient_cam(fuse=True)
def layercam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): ``relu(sum_c relu(dy/dA_c) ⊙ A_c)`` per position, at any depth.

    ``layer`` may name several layers (``"blocks.3,blocks.5,bn2"`` or a list): one backward
    pass gives all their gradients, and the maps are fused as in the paper's section on
    combining layers: each map is scaled by ``tanh(gamma M / max M)`` (``gamma=2`` as the
    paper), upsampled to the input and merged by the element-wise maximum (torchcam's
    ``fuse_cams`` does the same, at the largest map's size and with min-max instead of /max).
    With one layer the raw map is returned, unscaled, like the other CAMs.
    Signature: :func:`~convscope.attribution.cam.gradient_cam` (``fuse=True``).
    """
    return grads.clamp(min=0)


def _layer_activations(model, x, layer: str) -> torch.Tensor:
    return _clean_pass(model, x, layer)[0]


def _clean_pass(model, x, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations at ``layer``, logits) of the clean images from one forward pass."""
    with torch.no_grad(), capture(model, layer, detach=True) as seen:
        logits = model(x)
    activations = seen[layer]
    if activations.ndim != 4:
        raise ConvscopeError(f"layer {layer!r} has output shape {tuple(activations.shape)}; CAM needs (N, C, h, w)")
    return activations, logits


def _clean_targets(target, logits: torch.Tensor, labels):
    """The class ids chosen on the clean images (a callable target stays as it is), from their logits."""
    if callable(target) and not isinstance(target, torch.Tensor):
        return target
    return resolve_target(target, logits, labels)


def _scores(model, images: torch.Tensor, ids, labels) -> torch.Tensor:
    return target_score(ids, model(images), labels)


def _chosen_channels(activations: torch.Tensor, top_channels: int | None) -> torch.Tensor:
    """(N, k) channel ids per image: all of them, or the ``top_channels`` of largest mean activation."""
    count, channels = activations.shape[:2]
    if top_channels is None:
        return torch.arange(channels, device=activations.device).expand(count, channels)
    if top_channels < 1:
        raise ConvscopeError(f"top_channels must be >= 1, got {top_channels}")
    return activations.mean(dim=(2, 3)).topk(min(top_channels, channels), dim=1).indices


@METHODS.register(kind="cam", display="minmax", quick={"top_channels": 64})
def scorecam(
    model,
    x,
    target=None,
    layer: str | None = None,
    batch_size: int = 64,
    top_channels: int | None = None,
    interpolation: str = "bilinear",
    mask_align_corners: bool = False,
    scale_before_upsampling: bool = False,
) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020): channel weights from the scores of the image masked by each map.

    Each channel is upsampled (bilinear) to the input, min-max scaled to [0, 1] and multiplied
    with the [0, 1] image (masked-out pixels go to black, convscope's reference point); the
    masked images are scored ``batch_size`` at a time. The weight is the paper's (Algorithm 1)
    softmax over channels of the logit gain over the baseline, ``softmax_k(f(X ∘ H_k) - f(X_b))``:
    ``f(X_b)`` is the same for every channel, so it cancels in the softmax, and the weights equal
    pytorch-grad-cam's softmax of the raw target score and torchcam's gain over the clean image.
    Map ``relu(sum_k w_k A_k)``; the class is the one chosen on the clean image.

    The masks are upsampled bilinearly with ``align_corners=False`` like every map here;
    pytorch-grad-cam's ``UpsamplingBilinear2d`` aligns corners (``mask_align_corners=True``
    reproduces it; the softmax is sensitive to it: correlation 0.978 between the two at 64 px).
    torchcam 0.5 min-max scales each channel at the layer's resolution and upsamples afterwards
    (its docstring writes the paper's ``s(Up(A_k))``, its code does ``Up(s(A_k))``);
    ``scale_before_upsampling=True`` reproduces that (bilinear upsampling lowers a map's peak, so
    the masks differ: correlation 0.987 between the two conventions at 64 px).

    ``top_channels=k`` (not in the paper; off by default) masks only the k channels of largest
    mean activation, the others get weight 0 -- ``C / k`` times fewer forward passes.
    Cost: C (or k) forward passes per image and the clean image's (its class and activations), no
    backward.
    """
    layer = cam_layer(model, layer, x.shape[-1])
    labels = getattr(model, "labels", None)
    activations, logits = _clean_pass(model, x, layer)
    ids = _clean_targets(target, logits, labels)
    count, channels = activations.shape[:2]
    chosen = _chosen_channels(activations, top_channels)
    pairs = [(n, int(c)) for n in range(count) for c in chosen[n].tolist()]
    scores = torch.full((count, channels), float("-inf"), device=x.device, dtype=x.dtype)
    size = tuple(x.shape[-2:])
    with torch.no_grad():
        for start in range(0, len(pairs), max(1, batch_size)):
            part = pairs[start : start + batch_size]
            rows = torch.tensor([n for n, _ in part], device=x.device)
            cols = torch.tensor([c for _, c in part], device=x.device)
            masks = activations[rows, cols][:, None]
            if scale_before_upsampling:
                masks = _min_max(masks, eps=1e-8)
            masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=mask_align_corners)
            if not scale_before_upsampling:
                masks = _min_max(masks, eps=1e-8)
            targets = ids[rows] if isinstance(ids, torch.Tensor) else ids
            scores[rows, cols] = _scores(model, x[rows] * masks, targets, labels)
    weights = scores.softmax(dim=1)[:, :, None, None]
    return _finish((weights * activations).sum(dim=1, keepdim=True), x, True, interpolation)


@contextlib.contextmanager
def _replace_output(module: torch.nn.Module, make):
    """While the block runs, ``module``'s output is replaced by ``make(output)``."""
    with module.register_forward_hook(lambda _m, _i, output: make(output)):
        yield


@METHODS.register(kind="cam", display="minmax", quick={"top_channels": 64})
def ablationcam(
    model,
    x,
    target=None,
    layer: str | None = None,
    batch_size: int = 64,
    top_channels: int | None = None,
    relu: bool = True,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y`` with ``y_k`` the class logit
    when channel k of the layer is set to 0 (the paper's ablation), map ``relu(sum_k w_k A_k)``.

    Batched: each pass runs one image up to the layer once and the rest of the network on
    ``batch_size`` ablated copies of its activations (pytorch-grad-cam re-runs the layers below
    the target layer for every copy). Where the network cannot broadcast a single pre-layer
    tensor against the copies (a concatenation with an earlier output, say), every copy runs
    the whole network instead -- same result, slower. Unlike pytorch-grad-cam, which ablates
    with ``min - 1e7`` when a layer's minimum is not 0, the ablated value is always 0.
    ``top_channels=k`` (not in the paper; off by default, as Score-CAM's) ablates only the k
    channels of largest mean activation, the others get weight 0.
    Cost: C (or k) forward passes of the layers above ``layer`` per image and one clean pass (the
    class, the activations and the unablated score), no backward.
    """
    layer = cam_layer(model, layer, x.shape[-1])
    labels = getattr(model, "labels", None)
    activations, logits = _clean_pass(model, x, layer)
    ids = _clean_targets(target, logits, labels)
    count, channels = activations.shape[:2]
    chosen = _chosen_channels(activations, top_channels)
    module = find_layer(model, layer)
    with torch.no_grad():
        clean = target_score(ids, logits, labels)
        drops = clean[:, None].repeat(1, channels)  # unablated channels: no drop, weight 0
        for n in range(count):
            target_n = ids[n : n + 1] if isinstance(ids, torch.Tensor) else ids
            for start in range(0, chosen.shape[1], max(1, batch_size)):
                part = chosen[n, start : start + batch_size]
                ablated = activations[n : n + 1].repeat(len(part), 1, 1, 1)
                ablated[torch.arange(len(part)), part] = 0
                targets = target_n.expand(len(part)) if isinstance(ids, torch.Tensor) else ids
                drops[n, part] = _ablated_scores(model, module, x[n : n + 1], ablated, targets, labels)
    weights = ((clean[:, None] - drops) / clean[:, None])[:, :, None, None]
    return _finish((weights * activations).sum(dim=1, keepdim=True), x, relu, interpolation)


def _ablated_scores(model, module, image, ablated, targets, labels) -> torch.Tensor:
    copies = ablated.shape[0]
    try:
        with _replace_output(module, lambda output: ablated):
            logits = model(image)
        if logits.shape[0] == copies:
            return target_score(targets, logits, labels)
    except RuntimeError:
        pass
    with _replace_output(module, lambda output: ablated):
        logits = model(image.expand(copies, -1, -1, -1))
    return target_score(targets, logits, labels)


@METHODS.register(kind="cam", display="minmax")
def eigencam(
    model,
    x,
    target=None,
    layer: str | None = None,
    center: bool = False,
    relu: bool = True,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): the layer's activations projected on their first
    principal direction, ``A V_1`` with ``A`` the (h w, C) activation matrix and ``V_1`` its
    first right singular vector (one batched SVD). Class-agnostic: ``target`` is ignored.

    ``center=False`` is the paper's SVD of the raw activations; ``center=True`` subtracts the
    mean over positions first, as pytorch-grad-cam does. Sign convention (an SVD's sign is
    arbitrary): ``V_1`` is oriented so the map correlates positively with the channel-summed
    activation ``sum_c A_c`` (pytorch-grad-cam keeps LAPACK's sign, then applies the ReLU).
    """
    layer = cam_layer(model, layer, x.shape[-1])
    activations = _layer_activations(model, x, layer)
    count, channels, height, width = activations.shape
    matrix = activations.flatten(2).transpose(1, 2).double()  # (N, hw, C)
    if center:
        matrix = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    projection = matrix @ vh[:, 0, :, None]  # (N, hw, 1)
    total = activations.sum(dim=1).flatten(1).double()
    agreement = (
        (projection[..., 0] - projection[..., 0].mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))
    ).sum(dim=1)
    projection = projection * torch.where(agreement < 0, -1.0, 1.0).to(projection)[:, None, None]
    heat = projection.to(x.dtype).view(count, 1, height, width)
    return _finish(heat, x, relu, interpolation)


# ---------------------------------------------------------------- FullGrad
class _BiasRecorder(TorchFunctionMode):
    """Records the output and the (effective) bias of every conv / eval-BatchNorm / linear call."""

    def __init__(self):
        super().__init__()
        self.records: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        bias = None
        if func in (F.conv1d, F.conv2d, F.conv3d, F.linear):
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
        elif func is F.batch_norm:
            bias = _batch_norm_bias(args, kwargs)
        if bias is None or not isinstance(out, torch.Tensor) or not out.requires_grad:
            return out
        self.records.append((out, bias.detach()))
        # a clone goes on, so a later in-place op (ReLU(inplace=True)) cannot rewrite the recorded output
        return out.clone()


def _batch_norm_bias(args, kwargs):
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    values = dict(zip(names, args), **kwargs)
    mean, var = values.get("running_mean"), values.get("running_var")
    if values.get("training", False) or mean is None or var is None:
        return None
    weight, bias = values.get("weight"), values.get("bias")
    scale = (var + values.get("eps", 1e-5)).rsqrt() * (weight if weight is not None else 1.0)
    return (bias if bias is not None else 0.0) - mean * scale


def full_gradient_decomposition(model, x, target=None, objective: str = "logit"):
    """FullGrad's decomposition (Srinivas & Fleuret 2019, eq. 2): ``x ⊙ dy/dx`` (N, 3, H, W) and,
    for every conv / eval-BatchNorm / linear call with a bias, ``b ⊙ dy/dz`` at its output z.

    For a piecewise-linear network (ReLU/ReLU6, max-pool, BatchNorm in eval mode), the input
    term and all bias terms sum to the score exactly. Calls are seen functionally (a
    :class:`~torch.overrides.TorchFunctionMode`), so timm's ``BatchNormAct2d`` or ``Conv2dSame``
    count like ``nn.BatchNorm2d`` / ``nn.Conv2d``; a BatchNorm's bias is its eval-mode offset
    ``beta - gamma mean / sqrt(var + eps)``.

    Returns:
        ``(input_term, [bias_term, ...])``, bias terms (N, C, h, w) for convolutions and
        BatchNorm, (N, C) for linear layers.
    """
    inputs = x.detach().requires_grad_(True)
    recorder = _BiasRecorder()
    with recorder:
        score = objective_score(model, inputs, target, objective)
    outputs = [out for out, _ in recorder.records]
    grads = torch.autograd.grad(score.sum(), [inputs, *outputs], allow_unused=True)
    terms = []
    for (out, bias), grad in zip(recorder.records, grads[1:]):
        if grad is None:
            continue
        shape = (1, -1) + (1,) * (out.ndim - 2)
        terms.append(grad * bias.view(shape))
    return inputs.detach() * grads[0], terms


def _min_max(values: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per (image, channel) min-max scaling of (N, C, h, w) to [0, 1]."""
    flat = values.flatten(2)
    low, high = flat.amin(dim=2)[..., None, None], flat.amax(dim=2)[..., None, None]
    return (values - low) / (high - low + eps)


@METHODS.register(kind="cam", display="minmax")
def fullgrad(model, x, target=None, objective: str = "logit", interpolation: str = "bilinear") -> torch.Tensor:
    """FullGrad saliency (Srinivas & Fleuret 2019): ``psi(x ⊙ dy/dx) + sum_l sum_c psi(b_c ⊙ dy/dz_c)``.

    ``psi`` = absolute value, min-max scaling to [0, 1] per (image, channel) at the map's own
    resolution, then bilinear upsampling to the input (the paper's post-processing; the
    scaling is done before the upsampling, as pytorch-grad-cam). Every spatial bias term of
    :func:`full_gradient_decomposition` is used (convolutions with bias, BatchNorm in eval
    mode, whatever module class calls them; pytorch-grad-cam only finds modules whose type is
    exactly ``nn.Conv2d`` / ``nn.BatchNorm2d`` and so misses timm's ``BatchNormAct2d``). The
    input term is per colour channel. No layer option: FullGrad uses the whole network.
    One forward and one backward pass.
    """
    size = tuple(x.shape[-2:])
    input_term, terms = full_gradient_decomposition(model, x, target, objective)
    heat = _min_max(input_term.abs()).sum(dim=1, keepdim=True)
    for term in terms:
        if term.ndim != 4:
            continue
        # psi per channel, then the channel sum; upsampling is linear, so summing first is the same
        heat = heat + upsample_map(_min_max(term.abs()).sum(dim=1, keepdim=True), size, interpolation)
    return heat
