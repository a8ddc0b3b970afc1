"""The optimization machinery: objectives, parameterizations, transforms, priors and the loop.

Tiny hand-built networks where the right number can be computed by hand; lucent as the
reference for the Fourier/colour parameterization; the real model for the guarantees."""

import pytest
import torch
from torch import nn

from convscope.errors import ConvscopeError
from convscope.hooks import hook_count
from convscope.optimize import (
    STANDARD,
    alpha_norm,
    blur_every,
    channel,
    class_logit,
    clip_small_norm,
    direction,
    diversity,
    embedding,
    gram,
    gram_matrix,
    image_param,
    jitter,
    layer_energy,
    match_activations,
    neuron,
    optimize,
    pad,
    random_rotate,
    random_scale,
    roll,
    total_variation,
)
from convscope.optimize.objectives import Evaluation
from convscope.optimize.params import COLOR_CORRELATION, spectrum_scale
from convscope.optimize.transforms import compose
from convscope.testing import assert_untouched, model_state


class Tiny(nn.Module):
    """conv 1x1 (3 -> 2 channels, weights set by hand) -> global mean -> linear (2 -> 3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.head = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, -1.0]]).view(2, 3, 1, 1))
            self.head.weight.copy_(torch.tensor([[1.0, 0], [0, 1.0], [1.0, 1.0]]))

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(-2, -1)))


def evaluation(x):
    net = Tiny()
    acts = net.conv(x)
    return Evaluation({"conv": acts}, net.head(acts.mean(dim=(-2, -1))), x)


@pytest.fixture
def image():
    return torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))


def test_objectives_match_hand_computed_values(image):
    e = evaluation(image)
    red, green, blue = image[:, 0], image[:, 1], image[:, 2]
    torch.testing.assert_close(channel("conv", 0)(e), red.mean(dim=(-2, -1)))
    torch.testing.assert_close(
        channel("conv", [0, 1])(e), torch.stack([red[0].mean(), (2 * green[1] - blue[1]).mean()])
    )
    torch.testing.assert_close(neuron("conv", 1)(e), 2 * green[:, 2, 2] - blue[:, 2, 2])
    torch.testing.assert_close(neuron("conv", 0, y=0, x=4)(e), red[:, 0, 4])
    torch.testing.assert_close(class_logit(2)(e), red.mean(dim=(-2, -1)) + (2 * green - blue).mean(dim=(-2, -1)))
    acts = torch.stack([red, 2 * green - blue], 1)
    torch.testing.assert_close(layer_energy("conv")(e), 0.5 * acts.pow(2).flatten(1).mean(1))
    torch.testing.assert_close(direction("conv", torch.tensor([1.0, 1.0]))(e), acts.sum(1).flatten(1).mean(1))
    torch.testing.assert_close(match_activations("conv", acts)(e), torch.zeros(2))
    torch.testing.assert_close(match_activations("conv", 2 * acts)(e), torch.full((2,), 0.25))
    torch.testing.assert_close(gram("conv", acts)(e), torch.zeros(2))
    manual = acts.flatten(2) @ acts.flatten(2).transpose(1, 2) / 25
    torch.testing.assert_close(gram_matrix(acts), manual)
    torch.testing.assert_close(embedding(acts.mean(dim=(-2, -1)), "conv")(e), torch.ones(2))
    same = Evaluation({"conv": acts[:1].expand(3, -1, -1, -1)}, e.logits, image)
    torch.testing.assert_close(diversity("conv")(same), torch.full((3,), -1.0))


def test_objectives_compose_with_arithmetic(image):
    e = evaluation(image)
    a, b = channel("conv", 0), neuron("conv", 1)
    torch.testing.assert_close((2 * a - b + 1)(e), 2 * a(e) - b(e) + 1)
    torch.testing.assert_close((-a * 0.5)(e), -0.5 * a(e))
    torch.testing.assert_close(sum([a, b])(e), a(e) + b(e))
    torch.testing.assert_close((a * b)(e), a(e) * b(e))
    assert (a - 0.1 * total_variation()).layers == ("conv",)


def test_objective_errors_are_one_line(image):
    e = evaluation(image)
    with pytest.raises(ConvscopeError, match="2 channels"):
        channel("conv", 5)(e)
    with pytest.raises(ConvscopeError, match="3 channels for a batch of 2"):
        channel("conv", [0, 1, 0])(e)
    with pytest.raises(ConvscopeError, match="outside"):
        neuron("conv", 0, y=9)(e)


def test_priors_match_hand_computed_values():
    grey = torch.full((1, 3, 4, 4), 0.5)
    e = lambda x: Evaluation({}, torch.zeros(len(x), 1), x)
    torch.testing.assert_close(alpha_norm(6)(e(grey)), torch.zeros(1))
    torch.testing.assert_close(alpha_norm(2)(e(torch.ones(1, 3, 4, 4))), torch.tensor([0.75]))
    assert float(total_variation()(e(grey))) < 1e-9
    stripes = torch.zeros(1, 3, 4, 4)
    stripes[..., 1::2] = 1.0  # every horizontal neighbour differs by 1 in 3 channels, vertical ones agree
    torch.testing.assert_close(total_variation(2)(e(stripes)), torch.tensor([3.0]))
    torch.testing.assert_close(total_variation(1)(e(stripes)), torch.tensor([3**0.5]))
    pixels = grey.clone()
    blur_every(1, 1.0)(pixels, 0)
    torch.testing.assert_close(pixels, grey)
    spots = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    clip_small_norm(50)(spots, 0)
    assert (spots == 0.5).all(dim=1).float().mean() == pytest.approx(0.5, abs=0.02)


def test_parameterizations_match_lucent():
    spatial = pytest.importorskip("lucent.optvis.param.spatial")
    color = pytest.importorskip("lucent.optvis.param.color")
    torch.testing.assert_close(COLOR_CORRELATION, torch.tensor(color.color_correlation_normalized).float())
    ours = image_param(2, (32, 48))
    torch.manual_seed(0)
    (spectrum,), fft_image = spatial.fft_image((2, 3, 32, 48))
    with torch.no_grad():
        ours.tensor.copy_(spectrum)
    lucent_image = color.to_valid_rgb(fft_image, decorrelate=True)()
    torch.testing.assert_close(ours(), lucent_image)
    scale = 1.0 / torch.from_numpy(spatial.rfft2d_freqs(32, 48)).clamp_min(1 / 48).float()
    torch.testing.assert_close(spectrum_scale(32, 48), scale)


@pytest.mark.parametrize("basis", ["pixel", "fft"])
@pytest.mark.parametrize("output", ["sigmoid", "clamp"])
def test_parameterizations_start_from_given_images(small_batch, basis, output):
    param = image_param(init=small_batch, basis=basis, output=output)
    assert param().shape == small_batch.shape
    torch.testing.assert_close(
        param(), small_batch.clamp(1e-3, 1 - 1e-3) if output == "sigmoid" else small_batch, atol=2e-4, rtol=0
    )
    noise = image_param(3, 16, basis=basis, output=output, generator=torch.Generator().manual_seed(0))()
    assert noise.shape == (3, 3, 16, 16) and 0 <= noise.min() and noise.max() <= 1


def test_transforms_are_differentiable_and_seeded():
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    g = lambda: torch.Generator().manual_seed(3)
    assert pad(12)(x, g()).shape[-1] == 64 and jitter(8)(x, g()).shape[-1] == 32
    assert random_scale([1.5])(x, g()).shape[-1] == 60
    torch.testing.assert_close(random_rotate([0])(x, g()), x)
    quarter = random_rotate([90])(x, g())
    torch.testing.assert_close(
        quarter[0, :, 1:-1, 1:-1], torch.rot90(x[0], 1, (1, 2))[:, 1:-1, 1:-1], atol=1e-5, rtol=0
    )
    shifted = roll(5)(x, g())
    assert torch.allclose(shifted.sum(), x.sum())
    chain = compose(STANDARD)
    torch.testing.assert_close(chain(x, g()), chain(x, g()))
    chain(x, g()).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_loop_ascends_on_a_tiny_net_and_restores_it():
    net = Tiny()
    net.train()
    before = model_state(net)
    param = image_param(1, 8, basis="pixel", decorrelate=False, output="clamp")
    result = optimize(net, channel("conv", 1), param, steps=30, lr=0.1, progress=False, snapshot_every=10)
    assert_untouched(net, before)
    # channel 1 = 2·green − blue: the optimum is green 1, blue 0 everywhere (value 2)
    assert result.history[-1] == pytest.approx(2.0, abs=1e-4)
    torch.testing.assert_close(result.image[0, 1], torch.ones(8, 8))
    torch.testing.assert_close(result.image[0, 2], torch.zeros(8, 8))
    assert [step for step, _ in result.snapshots] == [10, 20, 30] and result.steps == 30
    lbfgs = optimize(
        net,
        channel("conv", 0) - alpha_norm(2),
        image_param(1, 4, basis="pixel", decorrelate=False),
        optimizer="lbfgs",
        lr=1.0,
        steps=10,
        progress=False,
    )
    assert lbfgs.history[-1] > lbfgs.history[0]


def test_loop_stops_early_and_on_ctrl_c():
    net = Tiny()
    flat = optimize(net, channel("conv", 0) * 0.0, image_param(1, 4), steps=50, early_stop=5, progress=False)
    assert flat.stopped == "early stop" and flat.steps == 6
    calls = []

    def interrupt(e):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return e["conv"].mean(dim=(1, 2, 3))

    from convscope.optimize import Objective

    stopped = optimize(net, Objective(interrupt, ["conv"]), image_param(1, 4), steps=10, progress=False)
    assert stopped.stopped == "interrupted" and stopped.steps == 3 and hook_count(net) == 0


def test_loop_leaves_no_hooks_when_it_fails():
    net = Tiny()
    before = model_state(net)
    with pytest.raises(ConvscopeError, match="2 channels"):
        optimize(net, channel("conv", 7), image_param(1, 4), steps=3, progress=False)
    with pytest.raises(ConvscopeError, match="unknown layer"):
        optimize(net, channel("nope", 0), image_param(1, 4), steps=3, progress=False)
    assert_untouched(net, before)


def test_loop_is_deterministic_under_a_seed(model):
    runs = [
        optimize(
            model,
            channel("blocks.2", 3),
            image_param(1, 48, generator=torch.Generator().manual_seed(0)),
            transforms=STANDARD,
            steps=3,
            seed=7,
            progress=False,
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0].image, runs[1].image)
    assert runs[0].history == runs[1].history


class SharedReLU(nn.Module):
    """conv -> relu -> conv -> the same relu -> head: a layer called twice per forward pass."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.relu = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.relu(self.b(self.relu(self.a(x)))).mean(dim=(-2, -1)))


def test_the_loop_skips_the_layers_after_the_objective_and_changes_nothing():
    net = SharedReLU()
    before = model_state(net)
    seeded = lambda: image_param(1, 12, generator=torch.Generator().manual_seed(0))
    cut = optimize(net, channel("relu", 1), seeded(), steps=6, progress=False)
    # the same objective, but reading the logits (times 0) on every step: the whole network runs
    full = optimize(net, channel("relu", 1) + 0 * class_logit(0), seeded(), steps=6, progress=False)
    torch.testing.assert_close(cut.image, full.image, rtol=0, atol=0)  # the second relu call is the one read
    assert cut.history == full.history
    calls = []
    hook = net.head.register_forward_hook(lambda *args: calls.append(1))
    optimize(net, channel("relu", 1), seeded(), steps=4, progress=False)
    hook.remove()
    assert len(calls) == 1  # the head ran in the first step only
    assert_untouched(net, before)
