"""The attack CLI, figure and folder evaluation as a user runs them."""

import pytest
import torch
from PIL import Image

import convscope
from convscope.attacks.evaluate import evaluate_attack
from convscope.attacks.figure import amplified, attack_figure
from convscope.images import load_folder
from helpers import run_cli


def test_amplified_perturbation_uses_the_full_range_around_grey():
    delta = torch.zeros(3, 4, 4)
    delta[0, 0, 0], delta[1, 1, 1] = 2 / 255, -1 / 255
    shown, gain = amplified(delta)
    assert abs(gain - 0.5 * 255 / 2) < 1e-3
    assert abs(shown[0, 0, 0] - 1) < 1e-6 and abs(shown[1, 1, 1] - 0.25) < 1e-6 and shown[2, 2, 2] == 0.5


def test_attack_command_writes_the_figure(monkeypatch, capsys, tmp_path):
    out = tmp_path / "attack.png"
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "attack",
        "sample:chelsea",
        "--method",
        "fgsm",
        "--eps",
        "2/255",
        "--size",
        "96",
        "--out",
        str(out),
        "--save-adversarial",
        str(tmp_path / "adv.png"),
        "--device",
        "cpu",
    )
    assert code == 0, text
    assert "fgsm: Egyptian cat" in text and "L∞ 2.00/255" in text
    assert Image.open(out).size[0] > 3 * Image.open(tmp_path / "adv.png").size[0]
    code, _, err = run_cli(monkeypatch, capsys, "attack", "sample:chelsea", "--eps", "8/0")
    assert code == 2 and "--eps" in err
    code, _, err = run_cli(monkeypatch, capsys, "attack", "sample:chelsea", "--method", "pgdd")
    assert code == 2 and "did you mean pgd" in err


def test_attack_eval_over_a_folder(model, monkeypatch, capsys, tmp_path):
    (tmp_path / "285").mkdir()
    for name in ("chelsea", "coffee"):
        convscope.save_image(convscope.load_image(f"sample:{name}", 64, "squash"), tmp_path / "285" / f"{name}.png")
    convscope.save_image(convscope.load_image("sample:coffee", 64, "squash"), tmp_path / "coffee.png")
    report = evaluate_attack(model, load_folder(tmp_path, 64, 2), "fgsm", 8 / 255)
    assert report.images == 3 and report.labelled == 2
    assert report.mean_linf <= 8 / 255 + 1e-6 and report.robust_accuracy <= report.clean_accuracy
    # only initially correct images are attacked; robust = correct and not fooled
    assert report.robust_accuracy * report.images == pytest.approx(report.attacked * (1 - report.success_rate))
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "attack-eval",
        str(tmp_path),
        "--method",
        "fgsm",
        "--eps",
        "8/255",
        "--size",
        "64",
        "--device",
        "cpu",
    )
    text = " ".join(text.split())  # rich may wrap the title
    assert code == 0 and "3 images, 2 labelled" in text and f"{100 * report.robust_accuracy:.1f}%" in text


def test_figure_titles_show_classes_and_confidence(model, chelsea, tmp_path):
    from helpers import png_dpi, png_title, svg_text

    result = convscope.attack(model, chelsea, method="fgsm", eps=2 / 255)
    picture = attack_figure(result)
    assert picture.size[0] > 2 * picture.size[1]
    attack_figure(result, 0, tmp_path / "a.png", model_name="efficientnet_lite0")
    assert png_title(tmp_path / "a.png") == "efficientnet_lite0: fgsm, ε = 2/255: fooled" and png_dpi(
        tmp_path / "a.png"
    ) == (300, 300)
    attack_figure(result, 0, tmp_path / "a.svg")
    assert "original: Egyptian cat 79.3%" in svg_text(tmp_path / "a.svg")
    assert "perturbation ×64, grey = 0 (L∞ 2.0/255," in svg_text(tmp_path / "a.svg")  # the scale and the budget
    assert result.rows()[0]["original"] == "Egyptian cat" and result.rows()[0]["adversarial"] != "Egyptian cat"


def test_fooling_command_writes_a_gallery(monkeypatch, capsys, tmp_path):
    out = tmp_path / "fooling.png"
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "fooling",
        "strawberry",
        "--generations",
        "3",
        "--popsize",
        "8",
        "--size",
        "32",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert code == 0 and "strawberry:" in text and "queries" in text and Image.open(out).size[0] > 0
    code, _, err = run_cli(monkeypatch, capsys, "fooling", "strawbery", "--generations", "1")
    assert code == 2 and "did you mean 'strawberry'" in err


def test_attack_eval_autoattack_writes_interval_csv_and_robustbench_json(monkeypatch, capsys, tmp_path):
    import csv
    import json

    (tmp_path / "data" / "285").mkdir(parents=True)
    for name in ("chelsea", "coffee"):
        convscope.save_image(
            convscope.load_image(f"sample:{name}", 64, "squash"), tmp_path / "data" / "285" / f"{name}.png"
        )
    code, text, err = run_cli(
        monkeypatch,
        capsys,
        "attack-eval",
        str(tmp_path / "data"),
        "--method",
        "autoattack",
        "--eps",
        "1/255",
        "--set",
        "steps=2",
        "--set",
        "queries=5",
        "--size",
        "64",
        "--device",
        "cpu",
        "--csv",
        str(tmp_path / "rows.csv"),
        "--json",
        str(tmp_path / "entry.json"),
    )
    assert code == 0, err
    entry = json.loads((tmp_path / "entry.json").read_text())
    assert entry["threat_model"] == "Linf" and entry["eps_255"] == 1.0 and entry["attack_version"] == "standard"
    assert (
        entry["n_examples"] == 2
        and entry["robust_acc_95ci"][0] <= entry["autoattack_acc"] <= entry["robust_acc_95ci"][1]
    )
    rows = list(csv.DictReader(open(tmp_path / "rows.csv")))
    assert len(rows) == 2 and all(r["label"] == "285" for r in rows)
    # the coffee mug is not an Egyptian cat: broken before any attack; chelsea robust or broken by a named stage
    by_id = {r["id"].split("/")[-1]: r for r in rows}
    assert by_id["coffee.png"]["broken_by"] == "clean"
    assert by_id["chelsea.png"]["broken_by"] in ("", "apgd-ce", "apgd-t", "fab-t", "square")
    assert f"{entry['autoattack_acc']:.1f}%" in " ".join(text.split())
