"""Shapley family (DeepLIFT, GradientSHAP, KernelSHAP, LIME): the papers' properties and captum.

Random draws are not shared with captum, so the cross-checks feed both the *same* draws
(captum's, recorded while it runs) and compare to float tolerance; the seeded methods are
compared on their spread over seeds."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import close_to, relu_twin
from torch import nn

from convscope.attribution import attribute
from convscope.attribution.shapley import (
    gradient_shap_from_draws,
    lime_weights,
    shapley_kernel_regression,
    superpixels,
    weighted_ridge,
)

captum_attr = pytest.importorskip("captum.attr")
SIZE = 64
TARGETS = [285, 967]


@pytest.fixture(scope="module")
def x(small_batch):
    return F.interpolate(small_batch, size=SIZE, mode="bilinear", antialias=True).clamp(0, 1)


@pytest.fixture(scope="module")
def reference_model(model):
    return copy.deepcopy(model).eval()


@pytest.fixture(scope="module")
def relu_model(model):
    """Every ReLU6 replaced by nn.ReLU(inplace=True): what captum's DeepLift rules cover."""
    return relu_twin(model)


def logit_change(model, x, reference):
    with torch.no_grad():
        return (model(x) - model(reference))[torch.arange(len(TARGETS)), TARGETS]


# ---------------------------------------------------------------- DeepLIFT
def test_deeplift_sums_to_delta_on_relu6_and_matches_captum_on_relu(model, reference_model, relu_model, x):
    ours, gap = attribute(model, x, TARGETS, method="deeplift", return_gap=True)
    change = logit_change(model, x, torch.zeros_like(x))
    assert gap.abs().max() < 1e-3 * change.abs().max()  # summation-to-delta, ReLU6 included
    # captum rewrites nn.ReLU modules only: on the ReLU6 model its sums miss the logit change
    theirs = captum_attr.DeepLift(reference_model).attribute(x.clone(), target=TARGETS)
    assert (theirs.sum(dim=(1, 2, 3)) - change).abs().max() > 0.05 * change.abs().max()
    # on the all-ReLU twin the two agree
    theirs = captum_attr.DeepLift(relu_model).attribute(x.clone(), target=TARGETS)
    assert close_to(attribute(relu_model, x, TARGETS, method="deeplift"), theirs, rtol=1e-3)


class OneUnit(nn.Module):
    """Linear(3 -> 1) then one nonlinearity, on a 1x1 image."""

    def __init__(self, activation):
        super().__init__()
        self.linear = nn.Linear(3, 1, bias=False)
        self.linear.weight.data = torch.tensor([[1.0, -2.0, 0.5]])
        self.activation = activation

    def forward(self, x):
        return self.activation(self.linear(x.flatten(1)))


@pytest.mark.parametrize("activation", [torch.sigmoid, nn.Tanh(), F.silu, nn.ReLU6(inplace=True)])
def test_deeplift_rescale_rule_by_hand(activation):
    """One unit: attribution_i = x_i w_i (f(z) - f(0)) / z, for functional calls and modules alike."""
    net = OneUnit(activation)
    x = torch.tensor([0.9, 0.05, 0.4]).view(1, 3, 1, 1)
    z = (net.linear.weight[0] * x.flatten()).sum().detach()  # 0.9 - 0.1 + 0.2 = 1.0
    f = activation if not isinstance(activation, nn.Module) else copy.deepcopy(activation)
    expected = x.flatten() * net.linear.weight[0].detach() * (f(z.clone()) - f(torch.tensor(0.0))) / z
    ours = attribute(net, x, lambda logits: logits[:, 0], method="deeplift")
    assert torch.allclose(ours.flatten(), expected, atol=1e-6)


class PoolNet(nn.Module):
    """VGG-style: (conv, 2x2 max-pool, ReLU) x 2, then a linear head -- max-pool and ReLU commute, and
    pooling first keeps captum's zero-difference fallback out of play (it broadcasts the first image's
    gradient there, captum#1276). The second max-pool is a module or an ``F.max_pool2d`` call (captum
    needs each module used once, and nn.ReLU modules)."""

    def __init__(self, functional: bool):
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.ReLU())
        self.second, self.pool = nn.Conv2d(8, 16, 3, padding=1), nn.MaxPool2d(2)
        self.relu, self.head, self.functional = nn.ReLU(), nn.Linear(16 * 4 * 4, 10), functional

    def forward(self, x):
        x = self.second(self.first(x))
        x = self.relu(F.max_pool2d(x, 2) if self.functional else self.pool(x))
        return self.head(x.flatten(1))


@pytest.mark.parametrize("functional", [False, True])
def test_deeplift_max_pool_rule(functional):
    """The max-pool rule keeps summation-to-delta through nn.MaxPool2d and F.max_pool2d alike, and
    splits one window by hand: the input's winner gets ``max(y, y_ref) - y_ref``, the reference's
    winner ``y - max(y, y_ref)``.

    captum 0.9's DeepLift has the same rule for nn.MaxPool2d but misses summation-to-delta on this
    very network (its own convergence delta -0.0020 / -0.0263 for logit changes of about 0.03; its
    zero-difference fallback broadcasts the first image's gradient, captum#1276), so the anchor here
    is the paper's property rather than captum's numbers; without max-pools the two agree (above)."""
    net = PoolNet(functional).eval()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 0.5
    ours, gap = attribute(net, images, [3, 7], method="deeplift", baseline=reference, return_gap=True)
    change = logit_change_of(net, images, reference)[[0, 1], [3, 7]]
    assert gap.abs().max() < 1e-5 * change.abs().max()
    assert not torch.equal(ours, attribute(net, images, [3, 7], method="input_x_gradient"))

    class Window(nn.Module):
        def forward(self, x):
            pooled = F.max_pool2d(x, kernel_size=(2, 2)) if functional else nn.MaxPool2d(2)(x)
            return pooled.flatten(1)

    image = torch.tensor([0.3, 0.1, 0.0, 0.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    black = torch.tensor([0.0, 0.0, 0.5, 0.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    by_hand = torch.zeros(1, 3, 2, 2)
    by_hand[0, 0, 1, 0] = 0.3 - 0.5  # the first channel's window is the score
    got = attribute(Window(), image, lambda out: out[:, 0], method="deeplift", baseline=black)
    assert torch.allclose(got, by_hand, atol=1e-7)


def logit_change_of(net, images, reference):
    with torch.no_grad():
        return net(images) - net(reference)


# ---------------------------------------------------------------- GradientSHAP
class Recorder(nn.Module):
    """Forwards to the model and keeps every batch it was called on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def test_gradient_shap_same_draws_as_captum(model, reference_model, x):
    """captum draws alpha with numpy; record its interpolated points (black baseline, no noise:
    point = alpha x) and feed the same alphas to convscope's GradientSHAP terms."""
    image, n = x[:1], 6
    recorder = Recorder(reference_model)
    np.random.seed(0)
    theirs = captum_attr.GradientShap(recorder).attribute(
        image, baselines=torch.zeros_like(image), target=285, n_samples=n, stdevs=0.0
    )
    points = torch.cat(recorder.seen)
    alphas = (points.flatten(1) * image.flatten(1)).sum(1) / (image.flatten() ** 2).sum()
    assert torch.allclose(points, alphas.view(-1, 1, 1, 1) * image, atol=1e-6)  # really alpha x
    terms = gradient_shap_from_draws(
        model, image.expand(n, -1, -1, -1), torch.zeros(n, *image.shape[1:]), alphas, torch.full((n,), 285)
    )
    assert close_to(terms.mean(0, keepdim=True), theirs, rtol=1e-3)


def test_gradient_shap_seeds_and_captum_agree(model, reference_model, x):
    """Same baseline distribution (the two images blurred and 14 uniform-noise images), n = 16,
    maps summed over colour and pooled 8 x 8. Measured over 5 seeds (same at 1 and 2 threads):
    correlation ours-vs-ours 0.42-0.54, ours-vs-captum 0.37-0.72, captum-vs-captum 0.21-0.55:
    the two are as close as either is to itself; the bound sits below the lowest. Re-measured
    over seeds 0-2 x threads 1/2/4: ours-vs-captum 0.33-0.67, identical at every thread count
    (seed 0, the test's: 0.67)."""
    pool = torch.cat(
        [F.avg_pool2d(x, 9, 1, 4), torch.rand(14, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))]
    )
    pooled = lambda a: F.avg_pool2d(a.sum(1, keepdim=True), 8)  # noqa: E731
    ours = attribute(model, x, TARGETS, method="gradient_shap", baselines=pool, samples=16, seed=0)
    torch.manual_seed(0), np.random.seed(0)
    theirs = captum_attr.GradientShap(reference_model).attribute(x, baselines=pool, target=TARGETS, n_samples=16)
    assert correlation(pooled(ours), pooled(theirs)) > 0.3
    assert torch.equal(ours, attribute(model, x, TARGETS, method="gradient_shap", baselines=pool, samples=16, seed=0))


def correlation(a, b) -> float:
    return float(np.corrcoef(torch.as_tensor(a).flatten().numpy(), torch.as_tensor(b).flatten().numpy())[0, 1])


# ---------------------------------------------------------------- KernelSHAP and LIME on superpixels
def record_coalitions(explainer):
    """Wrap the explainer's similarity function to record each coalition (interpretable sample)."""
    seen, original = [], explainer.similarity_func

    def similarity(original_input, perturbed, interpretable, **kwargs):
        seen.append(interpretable.detach().clone().flatten())
        return original(original_input, perturbed, interpretable, **kwargs)

    explainer.similarity_func = similarity
    return seen


def scores_of(recorder, target):
    return torch.cat([recorder.model(batch)[:, target] for batch in recorder.seen]).detach()


def test_kernel_shap_same_coalitions_as_captum(reference_model, x):
    image = x[:1]
    segments = superpixels(image, n_segments=12)
    recorder = Recorder(reference_model)
    explainer = captum_attr.KernelShap(recorder)
    seen = record_coalitions(explainer)
    torch.manual_seed(0)
    theirs = explainer.attribute(image, target=285, feature_mask=segments[:, None], n_samples=40, baselines=0.0)
    coalitions, values = torch.stack(seen), scores_of(recorder, 285)
    assert coalitions[0].all() and not coalitions[1].any()  # captum starts with the full and the empty coalition
    phi = shapley_kernel_regression(coalitions[2:], values[2:], values[0], values[1])
    per_segment = torch.stack([theirs[0, 0][segments[0] == s][0] for s in range(int(segments.max()) + 1)])
    # captum's soft constraint (weight 1e6 + intercept) vs the exact one: 1e-3 relative
    assert torch.allclose(phi.float(), per_segment, rtol=1e-3, atol=1e-3 * per_segment.abs().max().item())
    assert abs(phi.sum().item() - (values[0] - values[1]).item()) < 1e-4 * abs(values[0].item())


def test_lime_same_coalitions_as_captum(reference_model, x):
    from captum._utils.models.linear_model import SkLearnRidge

    image = x[1:]
    segments = superpixels(image, n_segments=12)
    recorder = Recorder(reference_model)

    def proximity(_original, _perturbed, interpretable, **kwargs):
        return lime_weights(interpretable.double(), 0.25).float()

    explainer = captum_attr.Lime(recorder, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=proximity)
    seen = record_coalitions(explainer)
    torch.manual_seed(0)
    theirs = explainer.attribute(image, target=967, feature_mask=segments[:, None], n_samples=40, baselines=0.0)
    coalitions, values = torch.stack(seen), scores_of(recorder, 967)
    ours = weighted_ridge(coalitions, values, lime_weights(coalitions, 0.25), alpha=1.0)
    per_segment = torch.stack([theirs[0, 0][segments[0] == s][0] for s in range(int(segments.max()) + 1)])
    assert torch.allclose(ours.float(), per_segment, rtol=1e-3, atol=1e-3 * per_segment.abs().max().item())


def test_superpixel_methods_properties(model, x):
    """KernelSHAP values sum to f(x) - f(black) per image; maps are constant on superpixels;
    seeded runs repeat. Spread over 5 seeds (12 SLIC segments -> 9 and 15 superpixels, 96
    samples; same at 1 and 2 threads): seed-to-seed correlation KernelSHAP 0.70-0.90, LIME
    0.95-0.98 (KernelSHAP at 20 superpixels needs ~512 samples for 0.7-0.84). Seeds 0-2 x
    threads 1/2/4: KernelSHAP 0.88-0.94, LIME 0.95-0.97, identical at every thread count."""
    segments = superpixels(x, n_segments=12)
    heat = attribute(model, x, TARGETS, method="kernel_shap", segments=segments, samples=96, seed=0)
    change = logit_change(model, x, torch.zeros_like(x))
    for i in range(2):
        values = torch.stack([heat[i, 0][segments[i] == s][0] for s in range(int(segments[i].max()) + 1)])
        assert abs(values.sum() - change[i]) < 1e-3 * abs(change[i])
        assert all((heat[i, 0][segments[i] == s] == values[s]).all() for s in range(len(values)))
    other = attribute(model, x, TARGETS, method="kernel_shap", segments=segments, samples=96, seed=1)
    assert correlation(heat, other) > 0.6
    lime = attribute(model, x, TARGETS, method="lime", segments=segments, samples=96, seed=0)
    assert torch.equal(lime, attribute(model, x, TARGETS, method="lime", segments=segments, samples=96, seed=0))
    assert correlation(lime, attribute(model, x, TARGETS, method="lime", segments=segments, samples=96, seed=1)) > 0.9
