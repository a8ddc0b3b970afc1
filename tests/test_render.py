"""The shared rendering module: maps to pictures."""

import torch

from convscope.render import Panel, bar_chart, figure, normalize_map, overlay, upsample


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


def test_bar_chart(tmp_path):
    picture = bar_chart(["a", "b"], [0.7, 0.2], tmp_path / "bars.png", title="top-2")
    assert (tmp_path / "bars.png").exists() and picture.size[0] > 100
