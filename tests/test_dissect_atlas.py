"""The static neuron atlas: every page and picture exists, every link is relative and resolves."""

import re

import pytest
import torch
from typer.testing import CliRunner

import convscope
from convscope.cli import app
from convscope.dissect.atlas import build_atlas
from convscope.dissect.examples import load_examples
from convscope.errors import ConvscopeError
from convscope.testing import assert_untouched, model_state
from helpers import png_dpi, png_title


@pytest.fixture(scope="module")
def mined(model, tmp_path_factory):
    folder = convscope.sample_folder(tmp_path_factory.mktemp("atlas_photos"), n=8)
    return folder, convscope.top_k_examples(model, folder, ["bn1", "blocks.2"], k=3, size=64, progress=False)


def _links(page):
    return re.findall(r'(?:href|src)="([^"]+)"', page.read_text())


def test_atlas_pages_link_up(model, mined, tmp_path):
    _, found = mined
    before = model_state(model)
    index = build_atlas(model, found, tmp_path / "atlas", channels=[0, 1, 2], projections=True, progress=False)
    assert_untouched(model, before)
    pages = sorted((tmp_path / "atlas").rglob("*.html"))
    assert len(pages) == 1 + 2 * (1 + 3)  # index, and per layer: its index and 3 channel pages
    for page in pages:
        for link in _links(page):
            assert not link.startswith(("http:", "https:", "/")), link  # opens from disk, nothing fetched
            assert (page.parent / link.split("#")[0]).exists(), f"{page.name} -> {link}"
    channel = (tmp_path / "atlas" / "blocks.2" / "channel_1.html").read_text()
    assert "channel_0.html" in channel and "channel_2.html" in channel  # neighbouring channels
    assert "../bn1/channel_1.html" in channel  # the same channel in the neighbouring layer
    stats = found.statistics("blocks.2")
    assert f"{float(stats['top'][1]):.4g}" in channel
    assert "conv_pwl" in channel  # its weights
    for source in found.sources[:1]:
        assert "atlas_photos" in source
    assert index.name == "index.html" and "blocks.2/channel_2.html" in index.read_text()


def test_atlas_errors(model, mined, tmp_path):
    _, found = mined
    with pytest.raises(ConvscopeError, match="was not mined"):
        build_atlas(model, found, tmp_path, layers=["blocks.5"], progress=False)
    with pytest.raises(ConvscopeError, match="no valid channels"):
        build_atlas(model, found, tmp_path, channels=[999], progress=False)


def test_atlas_and_examples_commands(mined, tmp_path):
    folder, _ = mined
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "atlas",
            str(folder),
            "--layer",
            "blocks.2",
            "--out",
            str(tmp_path / "site"),
            "--size",
            "64",
            "--k",
            "2",
            "--channels",
            "0-1",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "blocks.2" / "channel_1.html").is_file()
    result = runner.invoke(
        app,
        [
            "examples",
            "--layer",
            "blocks.2",
            "--image",
            "sample:coffee",
            "--size",
            "64",
            "--k",
            "3",
            "--out",
            str(tmp_path / "units"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    units = tmp_path / "units" / "units_blocks.2.png"
    assert png_title(units) == "efficientnet_lite0 · blocks.2: the units that fire most on sample:coffee"
    assert png_dpi(units) == png_dpi(tmp_path / "site" / "blocks.2" / "img" / "examples_1.png") == (300, 300)
    assert png_dpi(tmp_path / "site" / "blocks.2" / "img" / "weights_1.png") == (300, 300)
    assert load_examples(tmp_path / "site" / "examples-checkpoint.safetensors").complete


def test_atlas_with_feature_visualizations(model, tmp_path):
    pytest.importorskip("convscope.optimize.visualize")
    found = convscope.top_k_examples(
        model,
        torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)),
        "blocks.2",
        k=2,
        size=48,
        progress=False,
    )
    build_atlas(model, found, tmp_path, channels=[4], feature_vis=True, vis_steps=2, progress=False)
    assert (tmp_path / "blocks.2" / "img" / "vis_4.png").is_file()
    assert 'src="img/vis_4.png"' in (tmp_path / "blocks.2" / "channel_4.html").read_text()
    assert (
        "image 0" in (tmp_path / "blocks.2" / "channel_4.html").read_text()
        or "image 1" in (tmp_path / "blocks.2" / "channel_4.html").read_text()
    )  # in-memory images are named by index
