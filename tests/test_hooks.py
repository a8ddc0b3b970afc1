"""The hook manager and the state guard: capture what is asked, leave nothing behind."""

import pytest
import torch
from torch import nn

import convscope
from convscope import ConvscopeError, capture, frozen
from convscope.testing import assert_untouched, model_state


def test_captures_activations_and_gradients(model, small_batch):
    before = model_state(model)
    x = small_batch.clone().requires_grad_(True)
    with frozen(model), capture(model, ["blocks.3", "bn2"], grads=True) as seen:
        logits = model(x)
        logits[:, 285].sum().backward()
    assert_untouched(model, before)
    expected = model.network.forward_features(model.normalize(small_batch))
    assert torch.allclose(seen["bn2"], expected, atol=1e-5)
    assert seen.gradients["bn2"].shape == seen["bn2"].shape == (2, 1280, 4, 4)
    # dlogit/d(bn2) through global average pooling + linear: w_285 / (h * w) everywhere
    weight = model.network.classifier.weight[285].view(1, -1, 1, 1) / 16
    assert torch.allclose(seen.gradients["bn2"], weight.expand_as(seen.gradients["bn2"]), atol=1e-6)


def test_nothing_left_after_errors(model, chelsea):
    before = model_state(model)
    with pytest.raises(RuntimeError, match="boom"):
        with frozen(model), capture(model, "bn2", grads=True):
            model(chelsea)
            raise RuntimeError("boom")
    with pytest.raises(ConvscopeError):
        with capture(model, ["bn2", "no.such.layer"]):
            pass
    assert_untouched(model, before)


def test_frozen_restores_training_and_requires_grad():
    network = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    network.train()
    network[0].bias.requires_grad_(False)
    before = model_state(network)
    with pytest.raises(ValueError):
        with frozen(network):
            assert not network.training and not any(p.requires_grad for p in network.parameters())
            raise ValueError
    assert_untouched(network, before)
    assert network.training and network[0].weight.requires_grad and not network[0].bias.requires_grad


def test_activation_survives_a_later_inplace_relu():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
    x = torch.randn(1, 3, 8, 8)
    with capture(network, "0") as seen:
        network(x)
    assert (seen["0"] < 0).any()  # pre-ReLU values, not overwritten by the in-place ReLU


def test_gradient_is_the_gradient_of_the_output():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 1, 3))
    x = torch.randn(2, 3, 9, 9)
    with capture(network, "0", grads=True) as seen:
        out = network(x)
        out.sum().backward()
    hidden = network[0](x)
    (expected,) = torch.autograd.grad(network[2](torch.relu(hidden)).sum(), hidden)
    assert torch.allclose(seen.gradients["0"], expected, atol=1e-6)


def test_non_tensor_layer_output_is_a_clear_error():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            return self.pair(x)[0]

    net = Net()
    with pytest.raises(TypeError, match="not a tensor"):
        with capture(net, "pair"):
            net(torch.zeros(1))
    assert convscope.hooks.hook_count(net) == 0


def test_gradient_stops_at_the_layer_and_matches_the_full_backward(model, small_batch):
    with frozen(model), capture(model, "blocks.5", grads=True) as seen:  # constant input: graph starts at the layer
        short = seen.gradient(model(small_batch)[:, 285].sum(), "blocks.5")
    x = small_batch.clone().requires_grad_(True)
    with frozen(model), capture(model, "blocks.5", grads=True) as seen:
        model(x)[:, 285].sum().backward()
    assert torch.allclose(short, seen.gradients["blocks.5"], atol=1e-6)
    assert x.grad is not None
