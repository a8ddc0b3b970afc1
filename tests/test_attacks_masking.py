"""Gradient-masking checks: quiet on the real model, loud on a model whose gradients are zero."""

import warnings

import pytest
import torch
from torch import nn

import convscope
from convscope.attacks.masking import check_gradient_masking
from convscope.testing import assert_untouched, model_state


class ZeroGradient(nn.Module):
    """The same predictions, but no gradient reaches the input (the extreme case of masking)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.detach()) + 0 * x.sum()


@pytest.fixture(scope="module")
def photos():
    return torch.cat(
        [convscope.load_image(f"sample:{name}", 64, "squash") for name in ("chelsea", "coffee", "astronaut", "rocket")]
    )


def test_the_real_model_passes_every_check(model, photos):
    before = model_state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = check_gradient_masking(model, photos, eps=4 / 255, steps=10, queries=100)
    assert not report.suspicious and [c.passed for c in report.checks] == [True] * 5
    assert report.accuracy["clean"] == 1.0 and report.accuracy["pgd"] == 0.0 and report.accuracy["pgd unbounded"] == 0.0
    assert_untouched(model, before)


def test_zero_gradients_are_flagged_as_masking(model, photos):
    with pytest.warns(RuntimeWarning, match="white-box beats black-box"):
        report = check_gradient_masking(ZeroGradient(model), photos, eps=8 / 255, steps=10, queries=200)
    assert report.suspicious
    failed = {c.name for c in report.checks if not c.passed}
    assert "white-box beats black-box" in failed
    # threads 1/2/4 at the test's seed: PGD 1.0, Square 0.25 (the real model: PGD 0.0, every check passed)
    assert report.accuracy["square"] < report.accuracy["pgd"]  # the black-box attack does what PGD cannot


def test_defenses_cli_flags_the_non_differentiable_defense(monkeypatch, capsys):
    from helpers import run_cli

    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "defenses",
        "samples",
        "--defenses",
        "bit_depth,median",
        "--masking-checks",
        "--size",
        "64",
        "--limit",
        "4",
        "--steps",
        "5",
    )
    assert code == 0 and "gradient-masking" in stdout
    rows = {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.startswith("│")}
    assert "white-box beats black-box" in rows["bit_depth(3)"]  # round() has zero gradient
    assert rows["median(3x3)"].rstrip(" │").endswith("none")  # a median filter is differentiable
