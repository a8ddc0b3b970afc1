"""Weights as pictures: conv filters and an MLP's first-layer rows, plus the CLI command."""

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from convscope.cli import app
from convscope.dissect import filter_tiles, layer_weight, row_tiles, weight_grid, weight_tiles
from convscope.dissect.weights import channel_weight
from convscope.errors import ConvscopeError
from helpers import png_dpi, png_title


def test_rgb_filters_are_signed_and_scaled_per_filter():
    weight = torch.zeros(2, 3, 2, 2)
    weight[0, 0, 0, 0], weight[0, 2, 1, 1] = 2.0, -1.0
    weight[1, 1, 0, 1] = 0.5
    tiles = filter_tiles(weight)  # auto -> rgb for 3 inputs
    assert tiles.shape == (2, 3, 2, 2)
    assert tiles[0, 0, 0, 0] == 1.0 and tiles[0, 2, 1, 1] == 0.25 and tiles[0, 1, 0, 0] == 0.5
    assert tiles[1, 1, 0, 1] == 1.0 and tiles[1, 0, 0, 0] == 0.5  # zero weight = mid grey


def test_deep_filters_as_norm_or_per_input_channel():
    weight = torch.randn(4, 5, 3, 3, generator=torch.Generator().manual_seed(0))
    norm = filter_tiles(weight, "norm")
    expected = weight.norm(dim=1)
    torch.testing.assert_close(norm[:, 0], expected / expected.flatten(1).amax(1)[:, None, None])
    channels = filter_tiles(weight, "channels", max_inputs=2)
    assert channels.shape == (8, 3, 3, 3)  # filter-major: (filter 0, input 0), (filter 0, input 1), ...
    slice_ = weight[1, 1]
    torch.testing.assert_close(channels[3, 0], 0.5 + slice_ / (2 * slice_.abs().max()))
    with pytest.raises(ConvscopeError, match="3 input channels"):
        filter_tiles(weight, "rgb")


def test_embedded_first_layer_and_channel_weights(model):
    tiles = weight_tiles(model, "conv_stem")
    assert tiles.shape == (32, 3, 3, 3) and 0 <= tiles.min() and tiles.max() <= 1
    grid = weight_grid(tiles)
    assert grid.size[0] > grid.size[1] > 0
    source, weight = channel_weight(model, "bn1", 7)  # a norm layer shows the conv before it
    assert source == "conv_stem" and torch.equal(weight, layer_weight(model, "conv_stem")[7])
    assert channel_weight(model, "blocks.3", 5)[0].startswith("blocks.3.")


def test_mlp_rows_on_digits_are_8x8_templates():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    optimizer = torch.optim.Adam(mlp.parameters(), lr=0.02)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(mlp(x), y).backward()
        optimizer.step()
    assert (mlp(x).argmax(1) == y).float().mean() > 0.9  # seeds 0-4 x threads 1/2/4: 0.987-0.996
    tiles = weight_tiles(mlp, "0", shape=(8, 8))
    row = mlp[0].weight[4].detach()
    assert tiles.shape == (16, 3, 8, 8)
    torch.testing.assert_close(tiles[4, 1], (0.5 + row / (2 * row.abs().max())).reshape(8, 8))
    with pytest.raises(ConvscopeError, match="image shape"):
        weight_tiles(mlp, "0")
    with pytest.raises(ConvscopeError, match="cannot show rows"):
        row_tiles(mlp[0].weight, (7, 7))


def test_weights_command_writes_the_grid(tmp_path):
    out = tmp_path / "filters.png"
    result = CliRunner().invoke(app, ["weights", "efficientnet_lite0", "--layer", "conv_stem", "--out", str(out)])
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(out) as picture:
        assert picture.size[0] > 100
    # a Pillow-built sheet prints at 300 dpi and says what it shows, as the matplotlib figures do
    assert png_dpi(out) == (300, 300)
    assert png_title(out) == "efficientnet_lite0 · conv_stem (32x3x3x3): 32 filters, auto view"
    bad = CliRunner().invoke(app, ["weights", "--layer", "global_pool"])
    assert isinstance(bad.exception, ConvscopeError)


def test_pillow_sheets_are_saved_at_print_resolution(tmp_path):
    from PIL import Image

    from convscope.render import annotate, save_picture

    sheet = annotate(weight_grid(torch.rand(6, 3, 3, 3), numbered=True), "six random filters")
    assert png_title(save_picture(sheet, tmp_path / "s.png")) == "six random filters"
    assert png_dpi(tmp_path / "s.png") == (300, 300)
    assert png_title(save_picture(sheet, tmp_path / "t.png", title="another  title")) == "another title"
    with Image.open(save_picture(sheet, tmp_path / "s.jpg")) as jpeg:
        assert tuple(round(v) for v in jpeg.info["dpi"]) == (300, 300)
    assert save_picture(sheet, tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ConvscopeError, match="a picture is saved as .png"):
        save_picture(sheet, tmp_path / "s.svg")
