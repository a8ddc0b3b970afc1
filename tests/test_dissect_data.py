"""Dataset examples and the atlas on the data layer's specs: labelled sample sets, WordNet-ID class
folders, the model's preprocessing, the same images when a saved result is opened again."""

import shutil

import pytest
import torch

from convscope.data import imagenet_wnids, open_dataset, samples_folder
from convscope.dissect import top_k_examples
from convscope.dissect.examples import load_examples
from convscope.errors import ConvscopeError
from convscope.hooks import capture
from helpers import png_dpi, png_title, run_cli

try:
    samples_folder()
except ConvscopeError:  # the labelled samples are a test dependency (the Makefile installs them)
    pytest.skip("the labelled samples: pip install --no-deps foolbox==3.3.4", allow_module_level=True)


def test_mining_a_spec_streams_the_data_layer_images_and_reopens_them(model, tmp_path):
    checkpoint = tmp_path / "found.safetensors"
    found = top_k_examples(
        model, "samples:imagenet", "blocks.1", k=3, size=32, preprocess="crop", workers=0,
        checkpoint=checkpoint, progress=False, batch_size=6,
    )  # fmt: skip
    data = open_dataset("samples:imagenet", 32, "crop")
    assert found.complete and found.seen == 20 and found.spec == "samples:imagenet" and found.preprocess == "crop"
    assert [s.rsplit("/", 1)[-1] for s in found.sources] == [i.rsplit("/", 1)[-1] for i in data.ids]
    images = torch.stack([data[i][0] for i in range(20)])
    with torch.no_grad(), capture(model, "blocks.1", detach=True) as seen:
        model(images)
    strongest = seen["blocks.1"].flatten(2).amax(-1)  # (N, C): the top-3 images of every channel
    expected = strongest.topk(3, dim=0).indices.T
    assert torch.equal(found["blocks.1"].indices, expected)
    torch.testing.assert_close(found["blocks.1"].values, strongest.topk(3, dim=0).values.T, rtol=1e-4, atol=1e-5)
    # the Dataset object itself gives the same lists; a saved result reopens the same images by its spec
    same = top_k_examples(model, data, "blocks.1", k=3, size=32, workers=0, progress=False, batch_size=7)
    assert torch.equal(same["blocks.1"].indices, found["blocks.1"].indices) and same.preprocess == "crop"
    again = load_examples(checkpoint)
    assert again.spec == "samples:imagenet" and torch.equal(again.image(5), images[5])


def test_examples_and_atlas_commands_take_any_dataset_spec(model, monkeypatch, capsys, tmp_path):
    wnids = imagenet_wnids()
    tree = tmp_path / "val"
    for path in sorted(samples_folder().glob("imagenet_0[0-5]_*.jpg")):
        label = int(path.stem.rsplit("_", 1)[1])
        (tree / wnids[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tree / wnids[label] / path.name)
    common = ("-l", "conv_stem", "--k", "2", "--size", "32", "--workers", "0", "--device", "cpu")
    code, text, err = run_cli(
        monkeypatch, capsys, "atlas", str(tree), *common, "--channels", "0-1", "-o", str(tmp_path / "site")
    )
    assert code == 0, err
    page = (tmp_path / "site" / "conv_stem" / "channel_1.html").read_text()
    assert any(f"{folder.name}/imagenet_0" in page for folder in tree.iterdir())  # captions name the files
    assert "on 6 images" in " ".join(text.split())
    code, text, err = run_cli(monkeypatch, capsys, "examples", "samples:cifar10", *common, "-o", str(tmp_path / "ex"))
    assert code == 0, err
    assert "conv_stem: 20 images" in text and png_dpi(tmp_path / "ex" / "examples_conv_stem.png") == (300, 300)
    assert png_title(tmp_path / "ex" / "examples_conv_stem.png").endswith(
        "conv_stem: top-2 dataset examples per channel (20 images)"
    )
    assert load_examples(tmp_path / "ex" / "examples-checkpoint.safetensors").spec == "samples:cifar10"
    code, _, err = run_cli(monkeypatch, capsys, "examples", "nowhere:/x", *common, "-o", str(tmp_path / "bad"))
    assert code == 2 and "is not a folder, a samples:NAME set" in err and "Traceback" not in err
    code, _, err = run_cli(monkeypatch, capsys, "atlas", "samples:mnist", *common, "--engine", "spark")
    assert code == 2 and "unknown --engine 'spark'" in err
