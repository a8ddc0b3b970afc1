"""Attribution methods: hand-computed values on tiny networks, invariants for every registered method."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convscope
from convscope.attribution import METHODS, STOCHASTIC, attribute, rectifier_rule
from convscope.attribution.integrated import integrated_gradients, quadrature
from convscope.attribution.perturbation import occlusion
from convscope.errors import ConvscopeError
from convscope.testing import assert_untouched, model_state

# ---------------------------------------------------------------- a one-rectifier network, by hand
W1 = torch.tensor([[1.0, 2.0, -1.0], [-1.0, 1.0, 1.0], [2.0, -1.0, 1.0], [1.0, 1.0, 1.0]])
W2 = torch.tensor([[1.0, -2.0, 3.0, -1.0], [0.5, 0.5, 0.5, 0.5]])
PIXEL = torch.tensor([0.9, 0.2, 0.5])  # pre-activations W1 @ PIXEL = [0.8, -0.2, 2.1, 1.6]


class OneRectifier(nn.Module):
    """1x1 conv (W1) -> rectifier -> flatten -> linear (W2), on a 1x1 image."""

    def __init__(self, kind: str):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(W1[:, :, None, None])
            self.fc.weight.copy_(W2)
        self.kind = kind
        self.modules_ = {"ReLU": nn.ReLU(), "ReLU_inplace": nn.ReLU(inplace=True), "ReLU6": nn.ReLU6(inplace=True)}

    def forward(self, x):
        z = self.conv(x)
        if self.kind in self.modules_:
            z = self.modules_[self.kind](z)
        elif self.kind == "F.relu":
            z = F.relu(z)
        elif self.kind == "torch.relu_":
            z = torch.relu_(z)
        elif self.kind == "Tensor.relu":
            z = z.relu()
        elif self.kind == "F.relu6":
            z = F.relu6(z * 3)  # pre-activations [2.4, -0.6, 6.3, 4.8]: one saturates at 6
        return self.fc(z.flatten(1))


def by_hand(rule: str, kind: str) -> torch.Tensor:
    scale = 3 if kind == "F.relu6" else 1
    z = W1 @ PIXEL * scale
    upper = 6.0 if kind in ("F.relu6",) else float("inf")
    incoming = W2[0]
    if rule == "plain":
        gate = ((z > 0) & (z < upper)).float() * incoming
    elif rule == "guided":
        gate = ((z > 0) & (z < upper)).float() * incoming.clamp(min=0)
    else:
        gate = incoming.clamp(min=0)
    return scale * gate @ W1


@pytest.mark.parametrize("kind", ["ReLU", "ReLU_inplace", "F.relu", "torch.relu_", "Tensor.relu", "F.relu6"])
@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_rectifier_rules_by_hand(kind, rule):
    net = OneRectifier(kind)
    x = PIXEL.view(1, 3, 1, 1).clone().requires_grad_(True)
    with rectifier_rule(rule) as seen:
        score = net(x)[0, 0]
    (grad,) = torch.autograd.grad(score, x)
    assert seen.calls == 1
    assert torch.allclose(grad.flatten(), by_hand(rule, kind))
    # outside the block the plain gradient is back, and the forward values never changed
    (plain,) = torch.autograd.grad(net(x)[0, 0], x)
    assert torch.allclose(plain.flatten(), by_hand("plain", kind))
    assert not torch.allclose(plain.flatten(), by_hand(rule, kind))


def test_relu6_upper_bound_in_guided_rule():
    """A unit saturated at 6 passes no gradient under the guided rule (the clamp's own derivative)."""
    x = torch.tensor([-1.0, 3.0, 7.0], requires_grad=True)
    with rectifier_rule("guided"):
        y = nn.ReLU6()(x * 1)
    (grad,) = torch.autograd.grad(y, x, torch.tensor([1.0, 1.0, 1.0]))
    assert grad.tolist() == [0.0, 1.0, 0.0]
    with rectifier_rule("deconvnet"):
        y = nn.ReLU6()(x * 1)
    (grad,) = torch.autograd.grad(y, x, torch.tensor([1.0, -1.0, 1.0]))
    assert grad.tolist() == [1.0, 0.0, 1.0]


def test_rectifier_rule_leaves_nothing_behind_on_error():
    with pytest.raises(RuntimeError, match="boom"):
        with rectifier_rule("guided"):
            raise RuntimeError("boom")
    assert not torch._C._is_torch_function_mode_enabled()
    with pytest.raises(ConvscopeError, match="unknown rectifier rule"):
        with rectifier_rule("guidd"):
            pass


def test_guided_backprop_on_silu_network_warns_and_equals_gradient():
    net = convscope.wrap_model(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    )
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="plain gradient"):
        guided = attribute(net, x, 0, method="guided_backprop")
    assert torch.allclose(guided, attribute(net, x, 0, method="saliency", signed=True, channels=None))


# ---------------------------------------------------------------- linear models: exact answers
class LinearScore(nn.Module):
    """score_k = sum(w_k * x): every method has a closed form."""

    def __init__(self, size=8):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.weight = nn.Parameter(torch.randn(2, 3, size, size, generator=generator))

    def forward(self, x):
        return (x[:, None] * self.weight).flatten(2).sum(-1)


def test_integrated_gradients_exact_on_linear_model():
    net = LinearScore()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for baseline in ("black", "uniform", torch.full((3, 8, 8), 0.5)):
        attr, gap = integrated_gradients(net, x, 1, baseline=baseline, steps=3, return_gap=True, seed=0)
        from convscope.attribution.integrated import make_baseline

        expected = (x - make_baseline(x, baseline, seed=0)) * net.weight[1]
        assert torch.allclose(attr, expected, atol=1e-5) and gap.abs().max() < 1e-4


def test_quadrature_rules_sum_to_one():
    for rule in ("gausslegendre", "riemann_trapezoid"):
        alphas, weights = quadrature(10, rule)
        assert abs(weights.sum().item() - 1) < 1e-12 and 0 <= alphas.min() and alphas.max() <= 1
    assert torch.allclose(quadrature(3, "riemann_trapezoid")[1], torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64))


def test_integrated_gradients_gap_shrinks_with_steps(model, small_batch):
    x = F.interpolate(small_batch[:1], size=64, mode="bilinear")
    gaps = [
        attribute(model, x, 285, method="integrated_gradients", steps=s, return_gap=True, batch_size=64)[1].abs().item()
        for s in (4, 48)
    ]
    assert gaps[1] < gaps[0]


def test_occlusion_by_hand_on_linear_model():
    net = LinearScore()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    heat = occlusion(net, x, 0, window=1, stride=1, fill=0.5)
    expected = (net.weight[0] * (x[0] - 0.5)).sum(0)
    assert torch.allclose(heat[0, 0], expected, atol=1e-5)
    # 3x3 windows at stride 2 on 8 px: starts 0, 2, 4 and 5 (flush with the edge): every pixel covered
    heat = occlusion(net, x, 0, window=3, stride=2, fill=0.5)
    contribution = (net.weight[0] * (x[0] - 0.5)).sum(0)
    assert torch.allclose(heat[0, 0, 0, 0], contribution[:3, :3].sum(), atol=1e-5)
    # rows and columns 4..6 and 5..7 both cover pixel 6: four windows cover (6, 6)
    corner = sum(contribution[top : top + 3, left : left + 3].sum() for top in (4, 5) for left in (4, 5)) / 4
    assert torch.allclose(heat[0, 0, 6, 6], corner, atol=1e-5) and torch.isfinite(heat).all()
    with pytest.raises(ConvscopeError, match="uncovered"):
        occlusion(net, x, 0, window=2, stride=3)


# ---------------------------------------------------------------- CAM
def test_cam_equals_gradcam_times_area_on_gap_linear_head(model, small_batch):
    maps_cam = attribute(model, small_batch, [285, 967], method="cam")
    maps_grad = attribute(model, small_batch, [285, 967], method="gradcam", relu=False)
    area = 4 * 4  # bn2 is 4x4 at 128 px
    assert torch.allclose(maps_cam, maps_grad * area, rtol=1e-4, atol=1e-4 * maps_cam.abs().max().item())


def test_cam_refuses_other_heads():
    net = convscope.wrap_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)))
    with pytest.raises(ConvscopeError, match="GAP"):
        attribute(net, torch.rand(1, 3, 8, 8), 0, method="cam", layer="1")


def test_gradcam_on_the_cat(model, chelsea):
    heat = attribute(model, chelsea, "Egyptian cat", method="gradcam")
    assert heat.shape == (1, 1, 224, 224) and heat.min() >= 0
    # the cat's face fills the centre-left of the photo; the right-hand background is cooler
    assert heat[..., 60:170, 40:150].mean() > 2 * heat[..., :, 200:].mean()


# ---------------------------------------------------------------- invariants for every registered method
FAST = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 2, "seed": 0},
    "smoothgrad_sq": {"samples": 2, "seed": 0},
    "occlusion": {"window": 32, "stride": 32},
    "scorecam": {"top_channels": 16},
    "gradient_shap": {"samples": 2, "seed": 0},
    "kernel_shap": {"samples": 16, "seed": 0},
    "lime": {"samples": 16, "seed": 0},
}
PER_CHANNEL = {
    "input_x_gradient",
    "guided_backprop",
    "deconvnet",
    "integrated_gradients",
    "guided_gradcam",
    "deeplift",
    "gradient_shap",
    "lrp",
}


@pytest.fixture(scope="module")
def tiny_batch(small_batch):
    return F.interpolate(small_batch, size=64, mode="bilinear", antialias=True).clamp(0, 1)


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_invariants(model, tiny_batch, method):
    before = model_state(model)
    heat = attribute(model, tiny_batch, [285, 967], method=method, **FAST.get(method, {}))
    assert_untouched(model, before)
    assert heat.shape == (2, 3 if method in PER_CHANNEL else 1, 64, 64)
    assert torch.isfinite(heat).all() and heat.abs().sum() > 0
    if method in STOCHASTIC:
        again = attribute(model, tiny_batch, [285, 967], method=method, **FAST[method])
        assert torch.equal(heat, again)
    else:
        one = attribute(model, tiny_batch[1:], 967, method=method, **FAST.get(method, {}))
        assert torch.allclose(heat[1:], one, rtol=1e-3, atol=1e-4 * heat.abs().max().item())


def test_errors_leave_the_model_untouched(model, tiny_batch):
    before = model_state(model)
    with pytest.raises(ConvscopeError, match="unknown class name"):
        attribute(model, tiny_batch, "not a class", method="gradcam")
    with pytest.raises(ConvscopeError, match="unknown attribution method"):
        attribute(model, tiny_batch, 1, method="gradcm")
    with pytest.raises(ConvscopeError, match="no option"):
        attribute(model, tiny_batch, 1, method="saliency", steps=3)
    with pytest.raises(ConvscopeError, match="unknown layer"):
        attribute(model, tiny_batch, 1, method="gradcam", layer="blocks.99")
    with pytest.raises(ConvscopeError, match=r"\[0, 1\]"):
        attribute(model, tiny_batch * 3, 1, method="saliency")
    assert_untouched(model, before)


def test_saliency_conventions(model, tiny_batch):
    grad = attribute(model, tiny_batch, 285, method="saliency", signed=True, channels=None)
    assert torch.allclose(attribute(model, tiny_batch, 285, method="saliency"), grad.abs().amax(1, keepdim=True))
    assert torch.allclose(
        attribute(model, tiny_batch, 285, method="saliency", signed=True, channels="sum"), grad.sum(1, keepdim=True)
    )
    # log-softmax objective: d log p / dx = d z_y / dx - sum_k p_k d z_k / dx
    logp = attribute(model, tiny_batch, 285, method="saliency", signed=True, channels=None, objective="log_softmax")
    assert not torch.allclose(logp, grad)


def test_old_name_of_samples_still_works_with_a_warning(model, tiny_batch):
    """``n`` was SmoothGrad's, ``smooth=``'s and GradientSHAP's number of draws; it is ``samples`` now."""
    from convscope.attribution import gradient_shap, smoothgrad

    image = tiny_batch[:1]
    new = attribute(model, image, 285, method="smoothgrad", samples=2, seed=0)
    with pytest.warns(DeprecationWarning, match="n= is now samples="):
        old = attribute(model, image, 285, method="smoothgrad", n=2, seed=0)
    assert torch.equal(new, old)
    with pytest.warns(DeprecationWarning):
        smoothgrad(model, image, 285, n=2, seed=0)
    with pytest.warns(DeprecationWarning):
        attribute(model, image, 285, method="saliency", smooth={"n": 2, "seed": 0})
    with pytest.warns(DeprecationWarning):
        gradient_shap(model, image, 285, n=2, seed=0)
    with pytest.raises(ConvscopeError, match="give samples= only"):
        attribute(model, image, 285, method="gradient_shap", n=2, samples=2)


def test_smooth_option_averages_any_method(model, tiny_batch):
    smoothed = attribute(model, tiny_batch[:1], 285, method="guided_backprop", smooth={"samples": 3, "seed": 1})
    plain = attribute(model, tiny_batch[:1], 285, method="guided_backprop")
    assert smoothed.shape == plain.shape and not torch.allclose(smoothed, plain)
    # zero noise: the average of identical copies is the method itself
    same = attribute(model, tiny_batch[:1], 285, method="guided_backprop", smooth={"samples": 2, "noise": 0.0})
    assert torch.allclose(same, plain, atol=1e-5 * plain.abs().max().item())
    # internal batching does not change the result
    a = attribute(model, tiny_batch[:1], 285, method="smoothgrad", samples=4, seed=3, batch_size=4)
    b = attribute(model, tiny_batch[:1], 285, method="smoothgrad", samples=4, seed=3, batch_size=2)
    assert torch.allclose(a, b, atol=1e-5 * a.abs().max().item())
