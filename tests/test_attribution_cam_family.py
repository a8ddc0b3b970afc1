"""CAM family (HiResCAM, XGrad-CAM, LayerCAM, Score-CAM, Ablation-CAM, Eigen-CAM, FullGrad):
properties from the papers, and cross-checks against pytorch-grad-cam and torchcam on the
embedded model at 64 px (layer blocks.1.0.bn2: 96 ReLU6 channels at 16 x 16)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribution import attribute
from convscope.attribution.cam_family import full_gradient_decomposition
from convscope.hooks import capture
from convscope.layers import find_layer

SIZE = 64
TARGETS = [285, 967]
LAYER = "blocks.1.0.bn2"


@pytest.fixture(scope="module")
def x(small_batch):
    return F.interpolate(small_batch, size=SIZE, mode="bilinear", antialias=True).clamp(0, 1)


@pytest.fixture(scope="module")
def reference_model(model):
    """A private copy for the anchors (they call eval() and accumulate parameter grads)."""
    return copy.deepcopy(model).eval()


def scaled(maps: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) -> (N, H, W) min-max scaled per image, as the anchors return their maps."""
    maps = maps[:, 0]
    low, high = maps.flatten(1).amin(1)[:, None, None], maps.flatten(1).amax(1)[:, None, None]
    return ((maps - low) / (high - low + 1e-7)).detach().numpy()


def correlation(a, b) -> float:
    return float(np.corrcoef(np.asarray(a).ravel(), np.asarray(b).ravel())[0, 1])


# ---------------------------------------------------------------- properties from the papers
class GapNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> GAP -> Linear: CAM's architecture, with closed forms."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(5, 4)
        for parameter in self.parameters():
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5
        self.body[1].running_mean.uniform_(-0.2, 0.2, generator=generator)
        self.body[1].running_var.uniform_(0.5, 2.0, generator=generator)
        self.eval()

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def test_gap_head_closed_forms():
    """On Linear(GAP(A)) heads: HiResCAM's signed map sums to logit - bias (Draelos & Carin), and
    HiResCAM = XGrad-CAM = Grad-CAM (the gradient is W_c / (h w) everywhere)."""
    net, x = GapNet(), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    hires = attribute(net, x, [1, 3], method="hirescam", layer="body.4", relu=False)
    logits = net(x).detach()
    expected = logits[[0, 1], [1, 3]] - net.head.bias[[1, 3]].detach()
    assert torch.allclose(hires.sum(dim=(1, 2, 3)), expected, rtol=1e-4, atol=1e-5)
    for method in ("xgradcam", "gradcam"):
        other = attribute(net, x, [1, 3], method=method, layer="body.4", relu=False)
        assert torch.allclose(hires, other, rtol=1e-4, atol=1e-5)


def test_gradient_cams_share_one_template():
    """Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM and LayerCAM are weightings on one template: the same
    leading signature, their own options appended, called positionally or by keyword alike."""
    import inspect

    from convscope.attribution import METHODS
    from convscope.attribution.cam import gradcam

    shared = list(inspect.signature(METHODS.get("gradcam")).parameters)
    assert shared == ["model", "x", "target", "layer", "relu", "interpolation", "objective"]
    for name, own in (("gradcam_pp", []), ("hirescam", []), ("xgradcam", ["eps"]), ("layercam", ["gamma"])):
        parameters = list(inspect.signature(METHODS.get(name)).parameters)
        assert sorted(parameters) == sorted(shared + own), name
    net, x = GapNet(), torch.rand(2, 3, 8, 8)
    assert torch.equal(
        gradcam(net, x, 1, "body.4", False), attribute(net, x, 1, method="gradcam", layer="body.4", relu=False)
    )
    assert METHODS.get("layercam").__doc__.startswith("LayerCAM (Jiang et al. 2021)")


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_masked_cams_make_one_pass_per_channel_and_one_clean_pass(model, x, method):
    """Rows through the classifier head (a forward hook on the real model's last Linear): k masked /
    ablated copies per image and the clean image, nothing more (benchmarks/attribution_families.py
    counts the same for all 240 channels of blocks.3.0.bn2: 241, pytorch-grad-cam 241 / 242)."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    rows = []
    hook = head.register_forward_hook(lambda module, inputs, output: rows.append(len(output)))
    try:
        attribute(model, x, TARGETS, method=method, layer=LAYER, top_channels=8, batch_size=6)
    finally:
        hook.remove()
    assert sum(rows) == len(x) * (8 + 1)


def test_full_gradient_completeness():
    """FullGrad's eq. 2: input-gradient and bias-gradient terms sum to the logit exactly on a
    piecewise-linear network (conv biases, eval BatchNorm offsets and the Linear bias)."""
    net, x = GapNet(), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    inputs, terms = full_gradient_decomposition(net, x, [0, 2])
    total = inputs.sum(dim=(1, 2, 3)) + sum(term.flatten(1).sum(1) for term in terms)
    assert len(terms) == 4  # two convolutions, one BatchNorm, the Linear
    assert torch.allclose(total, net(x).detach()[[0, 1], [0, 2]], rtol=1e-4, atol=1e-5)


def test_fullgrad_sees_timm_batchnorm_act(model, x):
    """timm's BatchNormAct2d (BatchNorm + ReLU6 in one module) contributes its bias; replacing it by
    nn.BatchNorm2d + ReLU6 modules gives the same map."""
    twin = split_batchnorm_act(model)
    ours = attribute(model, x, TARGETS, method="fullgrad")
    assert torch.allclose(ours, attribute(twin, x, TARGETS, method="fullgrad"), rtol=1e-4, atol=1e-4)
    _, terms = full_gradient_decomposition(model, x, TARGETS)
    assert len([t for t in terms if t.ndim == 4]) == 49  # bn1, 16 blocks x 2-3 BatchNorms, bn2


def test_layercam_fusion_and_eigencam_sign(model, x):
    fused = attribute(model, x, TARGETS, method="layercam", layer="blocks.1,blocks.3,bn2")
    single = [attribute(model, x, TARGETS, method="layercam", layer=name) for name in ("blocks.1", "blocks.3", "bn2")]
    # fused = max over layers of tanh(2 M / max M) (each map upsampled): values in [0, tanh(2)]
    expected = torch.stack([torch.tanh(2 * m / m.flatten(1).amax(1).view(-1, 1, 1, 1)) for m in single]).amax(0)
    assert fused.max() <= np.tanh(2) + 1e-6
    # (the per-layer maps are upsampled before the tanh here, after it in the method: equal up to interpolation)
    assert correlation(fused, expected) > 0.99
    eigen = attribute(model, x, None, method="eigencam", layer=LAYER, relu=False)
    with torch.no_grad(), capture(model, LAYER, detach=True) as seen:
        model(x)
    total = F.interpolate(seen[LAYER].sum(1, keepdim=True), size=SIZE, mode="bilinear")
    assert all(correlation(eigen[i], total[i]) > 0 for i in range(2))


def split_batchnorm_act(model):
    """A copy with every timm BatchNormAct2d replaced by nn.Sequential(nn.BatchNorm2d, act)."""
    from timm.layers import BatchNormAct2d

    twin = copy.deepcopy(model).eval()
    for module in list(twin.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BatchNormAct2d):
                plain = nn.BatchNorm2d(child.num_features, eps=child.eps)
                plain.load_state_dict({k: v for k, v in child.state_dict().items()})
                setattr(module, name, nn.Sequential(plain, child.drop, child.act).eval())
    return twin


# ---------------------------------------------------------------- against pytorch-grad-cam
def grad_cam_maps(anchor, model, x, layer=LAYER, **options):
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layers = [find_layer(model, layer)] if layer else []
    with getattr(grad_cam, anchor)(model=model, target_layers=layers, **options) as engine:
        return engine(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])


@pytest.mark.parametrize(
    "method, anchor, options",
    [
        ("hirescam", "HiResCAM", {}),
        ("xgradcam", "XGradCAM", {}),
        ("layercam", "LayerCAM", {}),
        ("scorecam", "ScoreCAM", {}),
        ("ablationcam", "AblationCAM", {"batch_size": 48}),
    ],
)
def test_cam_family_matches_pytorch_grad_cam(model, reference_model, x, method, anchor, options):
    """pytorch-grad-cam min-max scales relu(map) at layer resolution and resizes with cv2; the same
    scaling of convscope's raw map agrees up to cv2 vs torch resampling. (Score-CAM: its masks are
    upsampled with aligned corners.)"""
    theirs = grad_cam_maps(anchor, reference_model, x, **options)
    extra = {"mask_align_corners": True} if method == "scorecam" else {}
    ours = scaled(attribute(model, x, TARGETS, method=method, layer=LAYER, **extra))
    assert np.abs(ours - theirs).max() < 0.05
    assert correlation(ours, theirs) > 0.999


def test_eigencam_matches_pytorch_grad_cam_up_to_sign(model, reference_model, x):
    """pytorch-grad-cam centres the activations and keeps LAPACK's arbitrary sign (then a ReLU):
    center=True with one of the two signs reproduces it; convscope's own sign follows sum_c A_c."""
    theirs = grad_cam_maps("EigenCAM", reference_model, x)
    # the signed projection at layer resolution (nearest upsampling by 4, subsampled back)
    raw = attribute(model, x, None, method="eigencam", layer=LAYER, center=True, relu=False, interpolation="nearest")[
        ..., ::4, ::4
    ]
    for i in range(2):
        best = max(
            correlation(
                scaled(F.interpolate((sign * raw[i : i + 1]).clamp(min=0), size=SIZE, mode="bilinear")), theirs[i]
            )
            for sign in (1, -1)
        )
        assert best > 0.999


def test_fullgrad_matches_pytorch_grad_cam(model, x):
    """pytorch-grad-cam's FullGrad only finds exact nn.Conv2d / nn.BatchNorm2d modules: on the
    embedded model (timm BatchNormAct2d) it sees no bias at all, so compare on the split twin."""
    twin = split_batchnorm_act(model)
    theirs = grad_cam_maps("FullGrad", copy.deepcopy(twin), x, layer=None)
    ours = scaled(attribute(model, x, TARGETS, method="fullgrad"))
    assert correlation(ours, theirs) > 0.99
    assert np.abs(ours - theirs).max() < 0.1


# ---------------------------------------------------------------- against torchcam
@pytest.mark.parametrize(
    "method, anchor", [("xgradcam", "XGradCAM"), ("layercam", "LayerCAM"), ("scorecam", "ScoreCAM")]
)
def test_cam_family_matches_torchcam(reference_model, model, x, method, anchor):
    """torchcam returns min-max scaled maps at layer resolution; upsampled, they agree with convscope's.
    Score-CAM compared at torchcam's mask convention (scaled before upsampling)."""
    methods = pytest.importorskip("torchcam.methods")
    with getattr(methods, anchor)(
        reference_model, target_layer="network." + LAYER, input_shape=(3, SIZE, SIZE)
    ) as extractor:
        scores = reference_model(x)
        (theirs,) = extractor(class_idx=TARGETS, scores=scores)
    theirs = F.interpolate(theirs[:, None].detach(), size=SIZE, mode="bilinear", align_corners=False)
    # Score-CAM: torchcam min-max scales the activations before upsampling them into masks, the
    # paper (and pytorch-grad-cam, matched above) after: 0.987 between the two conventions at 64 px
    options = {"scale_before_upsampling": True} if method == "scorecam" else {}
    ours = attribute(model, x, TARGETS, method=method, layer=LAYER, **options)
    assert correlation(scaled(ours), scaled(theirs)) > 0.999


def test_layercam_fusion_matches_torchcam(reference_model, model, x):
    """torchcam's fuse_cams: tanh(2 M') with M' min-max scaled, element-wise max at the largest map's
    size. The paper divides by the maximum only; with torchcam's scaling of convscope's per-layer
    maps the fusion is the same."""
    methods = pytest.importorskip("torchcam.methods")
    layers = ["blocks.1.0.bn2", "blocks.3.0.bn2", "bn2"]
    with methods.LayerCAM(
        reference_model, target_layer=["network." + name for name in layers], input_shape=(3, SIZE, SIZE)
    ) as extractor:
        scores = reference_model(x)
        fused = extractor.fuse_cams(extractor(class_idx=TARGETS, scores=scores))
    theirs = F.interpolate(fused[:, None].detach(), size=SIZE, mode="bilinear", align_corners=False)
    per_layer = [
        attribute(model, x, TARGETS, method="layercam", layer=name, interpolation="nearest") for name in layers
    ]
    strides = [SIZE // 16, SIZE // 4, SIZE // 2]
    mine = torch.stack(
        [
            F.interpolate(
                torch.tanh(2 * torch.as_tensor(scaled(m[..., ::s, ::s]))[:, None]), size=SIZE, mode="bilinear"
            )
            for m, s in zip(per_layer, strides)
        ]
    ).amax(0)
    assert correlation(mine, theirs) > 0.99
    # and convscope's own fusion (the paper's M / max M) is a different, stated scaling
    ours = attribute(model, x, TARGETS, method="layercam", layer=",".join(layers))
    assert ours.max() <= np.tanh(2) + 1e-6
