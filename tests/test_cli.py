"""The CLI as a user runs it: tables, one-line errors, exit codes, no tracebacks."""

import subprocess
import sys

import pytest

from helpers import run_cli


def test_predict_prints_the_cats_first(monkeypatch, capsys):
    # The CLI loads photos the torchvision way (Resize(256/224 S) + CenterCrop(S)): chelsea (451x300)
    # loses its sides and reads tiger cat 0.390, Egyptian cat 0.359, tabby 0.163 (1 and 2 threads);
    # squashed to 224x224 (the reference-point convention) it reads Egyptian cat 0.793.
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "sample:chelsea", "--device", "cpu", "--topk", "3")
    assert code == 0
    rows = [line for line in out.splitlines() if "│" in line]
    assert len(rows) == 3 and {"tiger cat", "Egyptian cat", "tabby"} == {row.split("│")[2].strip() for row in rows}
    assert "0.38" in rows[0] or "0.39" in rows[0]
    code, out, _ = run_cli(
        monkeypatch, capsys, "predict", "sample:chelsea", "--device", "cpu", "--topk", "1", "--preprocess", "squash"
    )
    row = [line for line in out.splitlines() if "│" in line][0]
    assert code == 0 and "Egyptian cat" in row and "285" in row and "0.79" in row


def test_models_and_layers(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "models")
    assert code == 0 and "efficientnet_lite0" in out and "torchvision:NAME" in out
    code, out, _ = run_cli(monkeypatch, capsys, "layers", "efficientnet_lite0", "--match", "bn2", "--size", "224")
    assert code == 0 and "1280x7x7" in out and "851" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "missing.png"], "no such image file"),
        (["predict", "sample:chelsea", "--model", "resnet"], "unknown model"),
        (["layers", "torchvision:vgg17"], "did you mean"),
        (["predict", "sample:chelsea", "--device", "cuda:7"], "CUDA is not available"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, args, message):
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_corrupt_image(monkeypatch, capsys, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(tmp_path / "broken.jpg"))
    assert code == 2 and "cannot read image" in err


def test_console_script_has_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "convscope.cli", "predict", "nofile.png"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "no such image file" in result.stderr and "Traceback" not in result.stderr
