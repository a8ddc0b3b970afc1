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
    import json

    import torch

    checkpoint = tmp_path / "unet.safetensors"
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "segment",
        "train",
        "generated:scenes",
        "--head",
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
    # self-describing: safetensors weights (no pickle) and a JSON of architecture, classes and size
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    assert meta["format"] == "convscope-segmenter/1" and meta["arch"] == "unet" and meta["size"] == 32
    assert meta["classes"][0] == "background" and checkpoint.read_bytes()[8:9] == b"{"
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
    code, out, _ = run_cli(  # the JSON names its weights: either file is the checkpoint
        monkeypatch, capsys, "segment", "eval", str(checkpoint.with_suffix(".json")), "generated:scenes", "--count", "2"
    )
    assert code == 0 and "mIoU" in out
    # a classifier command given the segmenter, and the torch.save files of earlier versions: one line each
    code, _, err = run_cli(monkeypatch, capsys, "predict", "sample:coffee", "-m", str(checkpoint), "--device", "cpu")
    assert code == 2 and "segment predict" in err and len(err.strip().splitlines()) == 1
    torch.save({"state_dict": {}, "arch": "unet", "classes": ["a"], "size": 32}, tmp_path / "old.pt")
    code, _, err = run_cli(monkeypatch, capsys, "segment", "eval", str(tmp_path / "old.pt"), "generated:scenes")
    assert code == 2 and "earlier 'segment train'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        monkeypatch, capsys, "segment", "train", "generated:scenes", "--head", "fcn4s", "--device", "cpu"
    )
    assert code == 2 and "unknown segmentation head 'fcn4s'" in err


def test_segment_train_takes_the_shared_model_options(monkeypatch, capsys, tmp_path):
    import json

    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pt")
    checkpoint = tmp_path / "r18.safetensors"
    code, out, err = run_cli(  # the spelling before --head: still works, with a warning
        monkeypatch, capsys, "segment", "train", "generated:scenes", "--arch", "fcn32s", "-m", "torchvision:resnet18",
        "--weights", str(tmp_path / "resnet18.pt"), "--count", "8", "--size", "32", "--epochs", "1",
        "--batch-size", "4", "-o", str(checkpoint), "--device", "cpu",
    )  # fmt: skip
    assert code == 0 and "--arch fcn32s is deprecated here: use --head fcn32s" in err, err
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    assert meta["arch"] == "fcn32s" and meta["backbone"] == "torchvision:resnet18"
    code, out, err = run_cli(  # the backbone is a known name: no other flag, no random-weights warning
        monkeypatch, capsys, "segment", "eval", str(checkpoint), "generated:scenes", "--count", "2", "--device", "cpu"
    )
    assert code == 0 and "mIoU" in out and "random weights" not in err


def test_finetune_rejects_a_bad_mode(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "finetune", "generated:photos", "--mode", "probe", "--device", "cpu")
    assert code == 2 and "unknown mode" in err
