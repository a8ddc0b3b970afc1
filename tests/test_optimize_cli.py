"""The synthesis commands as a user runs them, and the tour step."""

import pytest
from PIL import Image

from convscope.commands.synthesis import parse_channels, synthesis_step
from helpers import png_dpi, png_title, run_cli, svg_text


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
    # next to the pixels, the figure: model and layer in the title, each channel's id and activation
    drawn = tmp_path / "grid_figure.png"
    assert png_title(drawn) == "efficientnet_lite0 · blocks.2: feature visualization, 3 steps" and png_dpi(drawn) == (
        300,
        300,
    )


def test_channel_figure_names_each_channel_and_its_activation(model, tmp_path):
    from convscope.commands.synthesis import channel_titles, visualization_figure
    from convscope.optimize import visualize_channel

    shown = visualize_channel(model, "blocks.2", [3, 5], size=32, steps=2, progress=False)
    visualization_figure(shown, *channel_titles(shown, "blocks.2", [3, 5], "efficientnet_lite0"), tmp_path / "v.svg")
    text = svg_text(tmp_path / "v.svg")
    assert "efficientnet_lite0 · blocks.2: feature visualization, 2 steps" in text
    assert f"channel 3 mean activation {float(shown.scores[0]):.3g}" in text and "channel 5 mean activation" in text


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
    # the raw results and, since the figures issue, one titled figure of all four (synthesis.png)
    assert [f.name for f in files] == [
        "visualize_blocks4.png",
        "dream.png",
        "invert_blocks2.png",
        "stylize_brick.png",
        "synthesis.png",
    ]
    assert Image.open(files[1]).size == (224, 224) and Image.open(files[3]).size == (128, 128)
    assert png_title(files[0]) == "efficientnet_lite0 · blocks.4: feature visualization, 48 steps"
    assert png_title(files[4]) == "efficientnet_lite0: images made from gradients" and png_dpi(files[4]) == (300, 300)


def test_dream_invert_and_stylize_keep_the_raw_image_and_write_a_titled_figure(monkeypatch, capsys, tmp_path):
    common = ("--quiet", "--device", "cpu")
    runs = {
        "dream": ["dream", "sample:chelsea", "-l", "blocks.2", "--size", "48", "--steps", "1", "--octaves", "2"],
        "invert": ["invert", "sample:chelsea", "-l", "blocks.1", "--size", "40", "--steps", "2"],
        "stylize": ["stylize", "sample:chelsea", "sample:brick", "--size", "32", "--steps", "1"],
    }
    runs["stylize"] += ["--content-layer", "blocks.2", "--style-layers", "conv_stem,blocks.1"]
    titles = {}
    for name, args in runs.items():
        code, text, err = run_cli(monkeypatch, capsys, *args, *common, "-o", str(tmp_path / f"{name}.png"))
        assert code == 0, err
        raw, drawn = tmp_path / f"{name}.png", tmp_path / f"{name}_figure.png"
        assert Image.open(raw).size[0] in (48, 40, 32) and f"{drawn}" in " ".join(text.split())  # the pixels, as before
        assert png_dpi(drawn) == (300, 300)
        titles[name] = (png_title(drawn), " ".join(text.split()))
    title, text = titles["dream"]  # the energy the console printed, in the title
    energy = text.split(": ", 1)[1].split(" -> ")[:2]
    assert title == (
        f"efficientnet_lite0 · blocks.2: DeepDream, 2 octaves × 1 step, layer energy (½ mean h²) {energy[0]} → {energy[1]}"
    )
    title, text = titles["invert"]
    error = text.split("relative error ")[1].split()[0]
    assert title == (
        "efficientnet_lite0 · blocks.1: feature inversion (Mahendran & Vedaldi 2015), "
        f"relative error ‖Φ(x) − Φ0‖² / ‖Φ0‖² = {error}"
    )
    title, text = titles["stylize"]
    losses = text.split(" -> /")[0].replace("->", "→")
    assert title == f"efficientnet_lite0: style transfer (Gatys et al. 2016), {losses}" and "style loss" in losses
