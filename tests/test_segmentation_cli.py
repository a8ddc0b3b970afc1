"""``convscope heatmap``, ``segment train|eval|predict`` and ``finetune`` as a user runs them."""

from helpers import run_cli


def test_heatmap_writes_the_class_map(monkeypatch, capsys, tmp_path):
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "heatmap",
        "sample:chelsea",
        "--class",
        "tabby",
        "--size",
        "256",
        "--out",
        str(tmp_path / "heat.png"),
        "--device",
        "cpu",
    )
    assert code == 0 and "tabby: map (8, 13)" in out and (tmp_path / "heat.png").is_file()
    code, _, err = run_cli(monkeypatch, capsys, "heatmap", "sample:chelsea", "--class", "tabbyy dog", "--device", "cpu")
    assert code == 2 and "unknown class name" in err


def test_segment_train_eval_predict_round_trip(monkeypatch, capsys, tmp_path):
    checkpoint = tmp_path / "unet.pt"
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "segment",
        "train",
        "generated:scenes",
        "--arch",
        "unet",
        "--count",
        "12",
        "--size",
        "32",
        "--epochs",
        "1",
        "--out",
        str(checkpoint),
        "--device",
        "cpu",
    )
    assert code == 0 and "held-out mIoU" in out and checkpoint.is_file()
    code, out, _ = run_cli(
        monkeypatch, capsys, "segment", "eval", str(checkpoint), "generated:scenes", "--count", "4", "--device", "cpu"
    )
    assert code == 0 and "mIoU" in out and "astronaut" in out
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "segment",
        "predict",
        str(checkpoint),
        "sample:coffee",
        "--out",
        str(tmp_path / "masks.png"),
        "--device",
        "cpu",
    )
    assert code == 0 and (tmp_path / "masks.png").is_file() and "sample:coffee:" in out
    code, _, err = run_cli(
        monkeypatch, capsys, "segment", "train", "generated:scenes", "--arch", "fcn4s", "--device", "cpu"
    )
    assert code == 2 and "unknown segmentation architecture" in err


def test_finetune_rejects_a_bad_mode(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "finetune", "generated:photos", "--mode", "probe", "--device", "cpu")
    assert code == 2 and "unknown mode" in err
