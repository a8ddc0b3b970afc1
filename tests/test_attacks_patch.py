"""The adversarial patch (Brown et al. 2017): the placement operator by hand, and a real patch
trained on bundled photos that raises the target class on photos and placements it never saw."""

import math

import pytest
import torch

import convscope
from convscope.attacks.patch import Placement, adversarial_patch, apply_patch, circle_mask, patch_success
from convscope.errors import ConvscopeError
from convscope.testing import assert_untouched, model_state

ZEBRA = 340


def one(value):
    return torch.tensor([float(value)])


def test_patch_lands_where_placed_as_a_circle_and_leaves_the_rest():
    images = torch.zeros(1, 3, 40, 40)
    patch = torch.ones(3, 8, 8)
    placed = apply_patch(images, patch, Placement(one(0.25), one(0), one(0.5), one(-0.5)))
    # side 0.25 × 40 = 10 px, centred at (y, x) = (30, 10): white inside the circle, black elsewhere
    assert placed[0, :, 30, 10].min() > 0.99 and placed[0, :, 30, 17].max() == 0 and placed[0, :, 10, 30].max() == 0
    assert float(placed[0, 0].sum()) == pytest.approx(math.pi * 5**2, rel=0.1)  # a disc of radius 5 px
    turned = apply_patch(images, patch, Placement(one(0.25), one(math.pi / 4), one(0.5), one(-0.5)))
    assert float(turned[0, 0].sum()) == pytest.approx(float(placed[0, 0].sum()), rel=0.05)  # a circle turns into itself
    assert circle_mask(4).sum() == 12


def test_patch_trained_on_photos_fools_unseen_photos_and_placements(model):
    load = lambda names: torch.cat([convscope.load_image(f"sample:{name}", 128, "squash") for name in names])
    train, held_out = (
        load(("chelsea", "coffee", "astronaut", "rocket")),
        load(("camera", "coins", "hubble_deep_field", "page")),
    )
    before = model_state(model)
    big = (0.45, 0.6)  # 16–28 % of the area: a short run on four photos
    result = adversarial_patch(
        model, train, ZEBRA, size=32, scale=big, steps=100, batch_size=4, generator=torch.Generator().manual_seed(0)
    )
    assert_untouched(model, before)
    assert result.patch.shape == (3, 32, 32) and 0 <= result.patch.min() and result.patch.max() <= 1
    assert sum(result.history[-10:]) / 10 > result.history[0] + 5  # log P(zebra): −18.6 -> −2.2
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    ours = patch_success(model, held_out, result.patch, ZEBRA, scale=big, generator=torch.Generator().manual_seed(2))
    chance = patch_success(model, held_out, noise, ZEBRA, scale=big, generator=torch.Generator().manual_seed(2))
    # held-out success over seeds 0-2 x threads 1/2/4: 0.53-0.88 (seed 0, the test's: 0.78-0.88;
    # 0.91 measured before); the noise patch 0.0 in all; the log P gain 14.2-17.1
    assert ours >= 0.4 and chance == 0.0


def test_bad_patch_arguments_are_one_line_errors(model):
    photo = convscope.load_image("sample:chelsea", 64, "squash")
    with pytest.raises(ConvscopeError, match="must fit"):
        adversarial_patch(model, photo, ZEBRA, scale=(0.5, 1.5), steps=1)
    with pytest.raises(ConvscopeError, match="out of range"):
        adversarial_patch(model, photo, 5000, steps=1)


def test_cli_trains_a_patch_and_draws_it_on_held_out_photos(tmp_path, monkeypatch, capsys):
    from helpers import run_cli

    out = tmp_path / "patch.png"
    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "patch",
        "--target",
        "zebra",
        "--size",
        "64",
        "--patch-size",
        "16",
        "--steps",
        "3",
        "-o",
        str(out),
    )
    assert (
        code == 0
        and out.stat().st_size > 0
        and (tmp_path / "patch_alone.png").exists()
        and "held-out success" in stdout
    )
    from helpers import png_dpi, png_title

    title = png_title(out)  # model, target class and how many shown photos it turned
    assert title.startswith("efficientnet_lite0: adversarial patch for “zebra” (340), ") and "shown images" in title
    rate = (
        " ".join(stdout.split()).split("held-out success ")[1].split("%")[0]
    )  # the number that matters, as the CLI says it
    assert title.endswith(f"; success at random placements {rate}%")
    assert png_dpi(out) == (300, 300)
    code, _, stderr = run_cli(monkeypatch, capsys, "patch", "--scale", "big", "-o", str(out))
    assert code == 2 and "--scale" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli(monkeypatch, capsys, "patch", "--target", "no such class", "--steps", "1", "-o", str(out))
    assert code == 2 and "Traceback" not in stderr
