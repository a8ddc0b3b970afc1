"""Geirhos 2019 shape bias: category mapping, score convention, arithmetic, one real trial, CLI error."""

import sys

import pytest
import torch

from convscope.cli import main
from convscope.robustness.shape_bias import (
    CATEGORIES,
    CATEGORY_NAMES,
    CueConflict,
    ShapeBiasResult,
    category_scores,
    make_cue_conflict,
    shape_bias,
)
from convscope.testing import assert_untouched, model_state


def test_sixteen_disjoint_categories_of_imagenet_indices():
    assert len(CATEGORIES) == 16 and CATEGORY_NAMES[0] == "airplane"
    indices = [i for members in CATEGORIES.values() for i in members]
    assert len(indices) == len(set(indices)) and all(0 <= i < 1000 for i in indices)
    assert {281, 282, 283, 284, 285}.issubset(CATEGORIES["cat"])
    assert len(CATEGORIES["dog"]) == 109 and 192 not in CATEGORIES["dog"]  # the toolbox's list, not 151-268
    assert CATEGORIES["knife"] == (499,) and CATEGORIES["oven"] == (766,)


def test_category_score_is_the_mean_of_member_probabilities():
    p = torch.zeros(1, 1000)
    p[0, 285] = 0.6  # one cat class: cat score 0.6 / 6 = 0.1
    p[0, 499] = 0.3  # knife has one class: score 0.3
    p[0, [152, 153]] = 0.05  # dog: 0.1 / 109
    scores = category_scores(p)[0]
    assert torch.isclose(scores[CATEGORY_NAMES.index("cat")], torch.tensor(0.1))
    assert torch.isclose(scores[CATEGORY_NAMES.index("knife")], torch.tensor(0.3))
    assert torch.isclose(scores[CATEGORY_NAMES.index("dog")], torch.tensor(0.1 / 109))
    assert CATEGORY_NAMES[int(scores.argmax())] == "knife"  # the mean, not the sum, decides


def test_shape_bias_arithmetic_and_dropped_same_category_trials(model, monkeypatch):
    import convscope.robustness.shape_bias as module

    shapes = ["cat", "cat", "dog", "dog", "car", "car"]
    textures = ["dog", "car", "cat", "cat", "truck", "car"]  # the last trial agrees: dropped
    decisions = iter([["cat", "car", "dog", "bird", "truck"]])  # shape, texture, shape, other, texture
    monkeypatch.setattr(module, "category_decisions", lambda m, images, batch_size: next(decisions))
    trials = CueConflict(torch.rand(6, 3, 8, 8), shapes, textures, [str(i) for i in range(6)])
    result = shape_bias(model, trials)
    assert len(result.decisions) == 5 and result.shapes[-1] == "car" and result.textures[-1] == "truck"
    assert (result.shape_hits, result.texture_hits) == (2, 2) and result.shape_bias == 0.5
    table = result.per_category()
    assert table["cat"] == (0.5, 2) and table["dog"] == (1.0, 1) and table["car"] == (0.0, 1)
    assert ShapeBiasResult([], [], []).shape_bias != ShapeBiasResult([], [], []).shape_bias  # NaN


def test_real_cue_conflict_trial_on_the_embedded_model(model, tmp_path):
    before = model_state(model)
    cat = ("cat", "chelsea", __import__("convscope").load_image("sample:chelsea", 64, "squash"))
    bottle = ("bottle", "page", __import__("convscope").load_image("sample:page", 64, "squash"))
    trials = make_cue_conflict(model, [cat], [bottle, cat], steps=4, progress=False)
    assert trials.images.shape == (1, 3, 64, 64) and trials.names == ["chelsea+page"]
    assert 0 <= float(trials.images.min()) and float(trials.images.max()) <= 1
    assert not torch.equal(trials.images, cat[2])  # the texture changed the picture
    result = shape_bias(model, trials)
    assert result.decisions[0] in CATEGORY_NAMES
    assert result.shape_hits + result.texture_hits <= 1
    result.plot(tmp_path / "bias.png")
    assert (tmp_path / "bias.png").stat().st_size > 0
    assert_untouched(model, before)


def test_cli_missing_folder_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(
        sys, "argv", ["convscope", "shape-bias", "--shapes", str(tmp_path / "nope"), "--out", str(tmp_path)]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "no such folder" in err and len(err.strip().splitlines()) == 1
