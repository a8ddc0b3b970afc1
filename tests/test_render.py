"""The shared rendering module: maps to pictures."""

import torch

import numpy as np
import pytest

from convscope.render import Panel, bar_chart, colour_scale, figure, normalize_map, overlay, overlay_with_bar, upsample


def test_normalize_modes():
    heat = torch.tensor([[-2.0, 0.0], [1.0, 2.0]])
    assert torch.equal(normalize_map(heat, "minmax"), torch.tensor([[0.0, 0.5], [0.75, 1.0]]))
    assert normalize_map(heat, "abs", percentile=100).max() == 1 and normalize_map(heat, "abs").min() == 0
    signed = normalize_map(heat, "signed", percentile=100)
    assert signed[0, 1] == 0.5 and signed[0, 0] == 0 and signed[1, 1] == 1


def test_overlay_and_figure_sizes(chelsea):
    heat = torch.zeros(1, 1, 7, 7)
    heat[..., 3, 3] = 1
    picture = overlay(chelsea[0], heat)
    assert picture.size == (224, 224)
    assert upsample(heat, (224, 224)).shape == (1, 1, 224, 224)
    # the hot spot lands in the middle of the overlay, red under the 'jet' map
    centre, corner = picture.getpixel((112, 112)), picture.getpixel((5, 5))
    assert centre[0] > corner[0]
    sheet = figure([Panel(chelsea[0], "input"), Panel(heat[0], "map", under=chelsea[0], colorbar=True)], columns=2)
    assert sheet.size[0] > sheet.size[1] > 100


def test_overlay_tiles_carry_a_colour_bar_in_their_scale(chelsea):
    # a signed map (KernelSHAP, LIME, occlusion): true units, symmetric around 0, diverging colours
    heat = torch.linspace(-3, 1, 224 * 224).view(1, 224, 224)
    low, high, label = colour_scale(heat[0], "signed", "Shapley value (logit)")
    assert low == -high and high == pytest.approx(float(torch.quantile(heat.abs(), 0.995)), rel=1e-4)
    assert label == "Shapley value (logit) (0 = white; clipped at ±p99.5)"
    assert colour_scale(heat[0], "minmax", "CAM") == (0.0, 1.0, "CAM, min-max scaled: 0 = min, 1 = max")
    assert colour_scale(heat[0], "abs", "attribution")[2] == "|attribution| / its 99.5th percentile"
    tile = np.asarray(overlay_with_bar(chelsea[0], heat, "signed", "Shapley value (logit)"))
    assert tile.shape[1] > tile.shape[0] > 224  # the picture at about its own size, the bar beside it

    def share(rgb):  # pixels of (almost) this colour: the bar's ends, which the photo does not have
        return (np.abs(tile.astype(int) - rgb).max(-1) < 12).mean()

    assert share((103, 0, 31)) > 1e-4 and share((5, 48, 97)) > 1e-4  # RdBu_r: dark red on top, dark blue below
    jet = np.asarray(overlay_with_bar(chelsea[0], heat, "minmax", "CAM"))
    assert (np.abs(jet.astype(int) - (0, 0, 128)).max(-1) < 12).mean() > 1e-4  # jet's dark blue end at 0


def test_bar_chart(tmp_path):
    picture = bar_chart(["a", "b"], [0.7, 0.2], tmp_path / "bars.png", title="top-2")
    assert (tmp_path / "bars.png").exists() and picture.size[0] > 100


def test_figure_files_print_at_300_dpi_and_keep_their_text(chelsea, tmp_path):
    from PIL import Image

    from convscope.render import PRINT_DPI, SCREEN_DPI
    from helpers import png_dpi, svg_text

    heat = torch.linspace(-1, 1, 49).view(1, 7, 7)
    title = "efficientnet_lite0: a title long enough to be wrapped over two lines of this two-panel figure"
    panels = [
        Panel(chelsea[0], "input"),
        Panel(heat, "occlusion of tiger cat", under=chelsea[0], mode="signed", colorbar=True, unit="logit drop"),
    ]
    shown = figure(panels, tmp_path / "f.png", columns=2, suptitle=title, panel_size=2.0)
    assert png_dpi(tmp_path / "f.png") == (300, 300)
    with Image.open(tmp_path / "f.png") as printed:  # the file: 300 dots per inch of its size in inches
        assert printed.width == round(2 * 2.0 * PRINT_DPI) and printed.height > 2.0 * PRINT_DPI
        # the returned picture is the screen's: the same figure at 100 dpi
        assert shown.size == (printed.width // 3, printed.height // 3) and shown.info["dpi"] == (SCREEN_DPI,) * 2
    figure(panels, tmp_path / "f.svg", columns=2, suptitle=title, panel_size=2.0)
    text = svg_text(tmp_path / "f.svg")
    assert title in text and "occlusion of tiger cat" in text and "logit drop (0 = white" in text


def test_titles_wrap_to_the_width_they_have():
    from convscope.render import wrap

    text = wrap("efficientnet_lite0: fooling images (CPPN evolution, Nguyen 2015), 40 generations", 2.4, 11)
    assert text.count("\n") >= 2 and max(len(line) for line in text.split("\n")) <= 2.4 * 72 / (11 * 0.55)
    assert wrap("short\nlines", 3, 9) == "short\nlines"
