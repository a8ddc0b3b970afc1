"""The optional open_clip integration: a CLIP built from a weights file on disk, inverted
towards a text prompt. No CLIP weights exist offline, so a tiny CLIP architecture is
registered and saved with random weights: the file is loaded exactly as a user's would be."""

import json

import pytest
import torch

import convscope
from convscope.errors import ConvscopeError
from convscope.optimize import evaluate, embedding
from convscope.testing import assert_untouched, model_state
from helpers import run_cli

open_clip = pytest.importorskip("open_clip")
from convscope.optimize.clip import invert_text, load_clip, text_embedding  # noqa: E402

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    (folder / "convscope-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "convscope-tiny-clip.json")
    torch.manual_seed(0)
    path = folder / "tiny.pt"
    torch.save(open_clip.create_model("convscope-tiny-clip").state_dict(), path)
    return path


def test_loaded_encoder_takes_unit_range_images_of_any_size_and_matches_open_clip(weights):
    clip = load_clip("convscope-tiny-clip", weights)
    image = convscope.load_image("sample:chelsea", 64, "squash")
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = clip.model.encode_image((image - mean) / std)
        assert torch.allclose(clip.image_encoder(image), expected, atol=1e-5)
        assert clip.image_encoder(convscope.load_image("sample:chelsea", 96)).shape == (1, 32)  # resized
    assert text_embedding(clip, ["a cat", "a cup of coffee"]).shape == (2, 32)


def test_text_inversion_raises_the_cosine_to_the_prompt_and_leaves_the_model_alone(weights):
    clip = load_clip("convscope-tiny-clip", weights)
    before = model_state(clip.image_encoder)
    # a random tiny ViT's embedding does not survive lucent's pad/scale/rotate: optimize without
    # them here (a trained CLIP uses the standard transforms, the default)
    shown = invert_text(clip, ["a photo of a cat", "a red car"], size=64, steps=30, transforms=None, progress=False)
    assert shown.image.shape == (2, 3, 64, 64)
    goal = text_embedding(clip, ["a photo of a cat", "a red car"])
    photos = torch.cat([convscope.load_image(f"sample:{n}", 64, "squash") for n in ("chelsea", "coffee", "rocket")])
    for i in range(2):
        to_prompt = embedding(goal[i])
        photo_best = float(evaluate(clip.image_encoder, to_prompt, photos).max())
        assert (
            float(evaluate(clip.image_encoder, to_prompt, shown.image[i : i + 1])[0]) > photo_best + 0.3
        )  # measured 0.59 and 0.57
    assert shown.history[-1] > shown.history[0]
    assert_untouched(clip.image_encoder, before)


def test_bad_clip_inputs_are_one_line_errors(weights, tmp_path):
    with pytest.raises(ConvscopeError, match="not found"):
        load_clip("convscope-tiny-clip", tmp_path / "missing.pt")
    with pytest.raises(ConvscopeError, match="unknown open_clip model"):
        load_clip("ViT-Q-99", weights)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ConvscopeError, match="not a convscope-tiny-clip checkpoint"):
        load_clip("convscope-tiny-clip", corrupt)
    with pytest.raises(ConvscopeError, match="non-empty"):
        text_embedding(load_clip("convscope-tiny-clip", weights), [" "])


def test_cli_inverts_a_prompt_into_a_png(weights, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cat.png"
    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "invert-text",
        "a photo of a cat",
        "--clip",
        "convscope-tiny-clip",
        "--weights",
        str(weights),
        "--size",
        "64",
        "--steps",
        "3",
        "--quiet",
        "-o",
        str(out),
    )
    assert code == 0 and out.stat().st_size > 0 and "cosine" in stdout
    code, stdout, stderr = run_cli(
        monkeypatch,
        capsys,
        "invert-text",
        "a cat",
        "--clip",
        "convscope-tiny-clip",
        "--weights",
        str(tmp_path / "x.pt"),
    )
    assert code == 2 and "not found" in stderr and "Traceback" not in stdout + stderr
