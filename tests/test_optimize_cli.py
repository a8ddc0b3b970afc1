"""The synthesis commands as a user runs them, and the tour step."""

import pytest
from PIL import Image

from convscope.commands.synthesis import parse_channels, synthesis_step
from helpers import run_cli


def test_visualize_writes_a_grid_of_channels(monkeypatch, capsys, tmp_path):
    out = tmp_path / "grid.png"
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "visualize",
        "--layer",
        "blocks.2",
        "--channel",
        "0-1",
        "--size",
        "40",
        "--steps",
        "3",
        "--quiet",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert code == 0 and "blocks.2" in text
    assert Image.open(out).size == (2 * 40 + 3 * 2, 40 + 2 * 2)  # make_grid: 2 tiles, padding 2


def test_invert_sweep_writes_one_figure(monkeypatch, capsys, tmp_path):
    out = tmp_path / "sweep.png"
    code, text, _ = run_cli(
        monkeypatch,
        capsys,
        "invert",
        "sample:chelsea",
        "--sweep",
        "--layer",
        "bn1",
        "--layer",
        "blocks.2",
        "--size",
        "40",
        "--steps",
        "3",
        "--quiet",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert code == 0 and "bn1: relative error" in text and "blocks.2: relative error" in text
    assert out.is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["visualize", "--layer", "blocks.2"], "--layer needs --channel"),
        (["visualize"], "give either --layer"),
        (["visualize", "--layer", "blocks.2", "--channel", "x"], "--channel takes ids"),
        (["visualize", "--layer", "blocks.2", "--channel", "9999", "--steps", "1", "--size", "32"], "out of range"),
        (["invert", "sample:chelsea", "--layer", "bn1", "--layer", "bn2"], "one --layer"),
        (["dream", "sample:chelsea", "--layer", "blocks.77", "--steps", "1"], "unknown layer"),
        (
            ["stylize", "sample:chelsea", "sample:brick", "--init", "zeros", "--steps", "1", "--size", "32"],
            "init must be",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, args, message):
    code, _, err = run_cli(monkeypatch, capsys, *args, "--device", "cpu")
    assert code == 2 and message in err and "Traceback" not in err


def test_channel_lists():
    assert parse_channels("7") == [7] and parse_channels("0,3,9") == [0, 3, 9] and parse_channels("2-4") == [2, 3, 4]


def test_tour_step_writes_the_pictures(model, chelsea, tmp_path):
    files = synthesis_step(model, chelsea, tmp_path)
    assert [f.name for f in files] == ["visualize_blocks4.png", "dream.png", "invert_blocks2.png", "stylize_brick.png"]
    assert Image.open(files[1]).size == (224, 224) and Image.open(files[3]).size == (128, 128)
