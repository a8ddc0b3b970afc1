"""Does the explanation mean anything? Deletion/insertion (Petsiuk 2018), sanity checks (Adebayo 2018), the CLI."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convscope.attribution import attribute
from convscope.attribution.evaluate import deletion, insertion
from convscope.attribution.sanity import randomization_groups, sanity_check, sanity_figure, similarity
from convscope.testing import assert_untouched, model_state
from helpers import run_cli


@pytest.fixture(scope="module")
def cat(chelsea):
    return F.interpolate(chelsea, size=96, mode="bilinear", antialias=True).clamp(0, 1)


def test_deletion_and_insertion_reward_the_map_over_its_reverse(model, small_batch):
    cat = small_batch[:1]  # 128 px: at 96 px the cat is too small for black patches to be a fair deletion
    heat = attribute(model, cat, 285, method="gradcam")
    before = model_state(model)
    good, bad = deletion(model, cat, heat, 285, steps=8), deletion(model, cat, -heat, 285, steps=8)
    assert_untouched(model, before)
    assert good.scores.shape == (1, 9) and good.fractions[0] == 0 and good.fractions[-1] == 1
    # deterministic; AUC gaps at threads 1/2/4: deletion 0.237, insertion 0.260
    assert good.auc < bad.auc  # removing the Grad-CAM pixels first kills the cat faster
    # at fraction 0 the image is intact, at 1 it is all black, whatever the order
    assert torch.allclose(good.scores[:, [0, -1]], bad.scores[:, [0, -1]], atol=1e-5)
    assert insertion(model, cat, heat, 285, steps=8).auc > insertion(model, cat, -heat, 285, steps=8).auc


def test_similarity_measures():
    generator = torch.Generator().manual_seed(0)
    heat = torch.rand(1, 1, 32, 32, generator=generator)
    rho, ssim = similarity(heat, heat * 3)
    assert rho[0] == pytest.approx(1) and ssim[0] == pytest.approx(1)
    rho, ssim = similarity(heat, torch.rand(1, 1, 32, 32, generator=generator))
    assert abs(rho[0]) < 0.2 and ssim[0] < 0.2  # seeds 0-4: |rho| 0.000-0.028, ssim -0.05-0.03


def test_randomization_groups_top_down(model):
    groups = randomization_groups(model)
    assert groups[:3] == ["network.classifier", "network.conv_head", "network.blocks.6"]
    assert groups[-1] == "network.conv_stem" and "network.blocks.0" in groups


def test_cascading_sanity_check_as_in_the_paper(model, cat, tmp_path):
    """Randomizing the top layers changes saliency and Grad-CAM but hardly guided backprop (Adebayo 2018)."""
    before = model_state(model)
    groups = ["network.classifier", "network.conv_head", "network.blocks.6", "network.blocks.5"]
    result = sanity_check(model, cat, 285, ["saliency", "guided_backprop", "gradcam"], groups=groups, progress=False)
    assert_untouched(model, before)
    rho = {m: result.spearman[i, :, 0] for i, m in enumerate(result.methods)}
    # randomization seeds 0-2 x threads 1/2/4 (no thread dependence seen): guided backprop after the
    # logits 0.9998-1.0; saliency 0.30-0.34; Grad-CAM after 4 groups -0.003-0.53 (0.53 at seed 0,
    # the test's); guided backprop minus saliency over the first 3 steps 0.69-0.71
    assert rho["guided_backprop"][0] > 0.95  # logits randomized: guided backprop is nearly unchanged
    assert rho["saliency"][0] < 0.6 and rho["gradcam"][-1] < 0.6
    assert rho["guided_backprop"][:3].mean() > rho["saliency"][:3].mean() + 0.3
    assert len(result.maps["gradcam"]) == len(groups) + 1 and result.steps[0] == "classifier"
    picture = sanity_figure(result, cat[0])
    assert picture.size[0] > picture.size[1]
    from helpers import svg_text

    sanity_figure(result, cat[0], tmp_path / "sanity.svg")  # titled with the model, the class and each step's ρ
    text = svg_text(tmp_path / "sanity.svg")
    assert "efficientnet_lite0, Egyptian cat (285): sanity check (cascading randomization" in text
    rho, ssim = result.spearman[0, 0].mean(), result.ssim[0, 0].mean()
    assert f"saliency original classifier ρ {rho:.2f}, SSIM {ssim:.2f}" in text
    # wrapped: 3 methods x 5 maps at 2 columns is 3 x 3 rows (each method starts a row)
    assert sanity_figure(result, cat[0], columns=2).size[1] > 2.5 * picture.size[1]


def test_independent_randomization_touches_one_group(model, cat):
    result = sanity_check(
        model,
        cat,
        285,
        ["saliency"],
        scheme="independent",
        groups=["network.classifier", "network.conv_stem"],
        progress=False,
    )
    assert result.spearman.shape == (1, 2, 1) and result.scheme == "independent"  # max 0.30-0.34 (seeds 0-2)
    assert np.all(result.spearman < 0.95)


def test_explain_command_writes_figure_and_array(monkeypatch, capsys, tmp_path):
    out, array = tmp_path / "cat.png", tmp_path / "cat.npy"
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "explain",
        "sample:chelsea",
        "--method",
        "gradcam",
        "--topk",
        "2",
        "--size",
        "96",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--save-array",
        str(array),
    )
    assert code == 0 and out.exists()
    maps = np.load(array)
    assert maps.shape == (2, 1, 96, 96) and maps.max() > 0


def test_explain_all_uses_the_quick_settings_and_says_so(monkeypatch, capsys, tmp_path):
    out = tmp_path / "all.png"
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "explain",
        "sample:chelsea",
        "--method",
        "all",
        "--size",
        "48",
        "--device",
        "cpu",
        "-o",
        str(out),
    )
    assert code == 0 and out.exists()
    assert "quick settings for" in text and "scorecam top_channels=64" in text and "kernel_shap samples=64" in text


def test_explain_and_sanity_reject_bad_input(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "explain",
        "sample:chelsea",
        "--method",
        "gradcm",
        "--out",
        str(tmp_path / "x.png"),
        "--device",
        "cpu",
    )
    assert code == 2 and "gradcam" in err and "Traceback" not in err
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "sanity",
        "sample:chelsea",
        "--methods",
        "saliency",
        "--scheme",
        "upwards",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "s.png"),
    )
    assert code == 2 and "cascading" in err


def test_colour_bar_units_follow_how_the_map_is_drawn():
    from convscope.attribution import display_mode, display_unit

    # Guided Grad-CAM is a CAM-family entry drawn by |value| (a gradient product): its bar is not "CAM"
    assert display_unit("gradcam") == "CAM" and display_unit("guided_gradcam") == "attribution"
    assert display_unit("saliency") == "attribution" and display_unit("occlusion") == "drop in logit when hidden"
    assert display_unit("occlusion", {"objective": "probability"}) == "drop in probability when hidden"
    # KernelSHAP / LIME values are signed logit shares: drawn diverging around 0, not as |value|
    assert display_mode("kernel_shap") == display_mode("lime") == "signed"
    assert display_unit("kernel_shap") == "Shapley value (logit)" and display_unit("lime") == "LIME coefficient (logit)"
