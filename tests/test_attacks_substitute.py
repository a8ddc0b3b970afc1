"""Substitute-model transfer attack (Papernot 2017) against a label-only black box."""

import torch
from torch import nn

from convscope.attacks import attack
from convscope.attacks.substitute import small_substitute, substitute_attack
from convscope.testing import assert_untouched, model_state


def colour_black_box():
    """Classifies by mean colour (3 classes): a simple boundary a substitute can learn from labels."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    with torch.no_grad():
        net[2].weight.copy_(torch.eye(3) * 10)
        net[2].bias.zero_()
    return net


def test_substitute_learns_the_black_box_and_its_examples_transfer():
    black_box = colour_black_box()
    generator = torch.Generator().manual_seed(0)
    seed = torch.rand(24, 3, 16, 16, generator=generator)
    x = torch.rand(8, 3, 16, 16, generator=generator)
    architecture = small_substitute(3)
    before, before_sub = model_state(black_box), model_state(architecture)
    result = substitute_attack(
        black_box,
        seed,
        x,
        substitute=architecture,
        eps=0.1,
        rounds=2,
        epochs=15,
        lr=3e-3,
        generator=torch.Generator().manual_seed(1),
    )
    assert_untouched(black_box, before)
    assert_untouched(architecture, before_sub)  # the user's module is copied, not trained
    assert result.queries == 24 * 4  # the set doubles in each of 2 rounds, one label query per point
    assert result.agreement >= 0.8
    assert (result.x_adv - x).abs().amax() <= 0.1 + 1e-6
    with torch.no_grad():
        fooled = black_box(result.x_adv).argmax(1) != black_box(x).argmax(1)
    # agreement 1.0 and fooled 0.375-0.875 over generator seeds 1-5 x threads 1/2/4 (seed 1: 0.875 at
    # every thread count); at eps 0.1 a few of the 8 always transfer
    assert torch.equal(result.transfer_success, fooled) and fooled.float().mean() >= 0.25


def test_substitute_through_the_registry_reports_queries():
    black_box = colour_black_box()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    result = attack(black_box, x, method="substitute", eps=0.1, seed=0, rounds=1, epochs=3)
    assert result.queries is not None and (result.queries >= 2).all() and (result.linf <= 0.1 + 1e-6).all()
