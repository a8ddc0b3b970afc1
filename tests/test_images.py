"""Loading images of every kind, and the errors for the ones that cannot be read."""

import numpy as np
import pytest
import torch
from PIL import Image

import convscope
from convscope import ConvscopeError
from convscope.images import SAMPLES, load_folder, sample_array, save_image


def test_sample_photo():
    x = convscope.load_image("sample:chelsea")
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert convscope.load_image("sample:chelsea", size=None).shape == (1, 3, 300, 451)
    assert convscope.load_image("sample:chelsea", size=(100, 120), preprocessing="center-crop").shape == (
        1,
        3,
        100,
        120,
    )


def test_photos_are_centre_cropped_like_the_cli_unless_squash_is_asked():
    from convscope.images import preprocess

    raw = convscope.load_image("sample:chelsea", size=None)  # 451 x 300
    cropped = convscope.load_image("sample:chelsea")
    assert torch.equal(cropped, preprocess(raw, 224, "center-crop"))  # shorter side 256, centre 224
    assert torch.equal(convscope.load_image("sample:chelsea", 224, "squash"), preprocess(raw, 224, "squash"))
    assert not torch.allclose(cropped, convscope.load_image("sample:chelsea", 224, "squash"), atol=0.05)
    small = torch.rand(1, 3, 32, 32)
    assert torch.equal(convscope.load_image(small, 32), small)  # already at the size: kept (CIFAR pictures)
    with pytest.raises(ConvscopeError, match="choose center-crop"):
        convscope.load_image("sample:chelsea", 64, "stretch")


def test_every_listed_sample_loads_offline():
    for name in SAMPLES:
        assert convscope.load_image(f"sample:{name}", size=32).shape == (1, 3, 32, 32)


def test_unknown_sample_suggests():
    with pytest.raises(ConvscopeError, match="chelsea"):
        convscope.load_image("sample:chelsae")


@pytest.fixture(scope="module")
def photo():
    return sample_array("chelsea")[:64, :96]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp"])
def test_file_formats(tmp_path, photo, suffix):
    path = tmp_path / f"cat{suffix}"
    Image.fromarray(photo).save(path)
    x = convscope.load_image(path, size=None)
    assert x.shape == (1, 3, 64, 96)
    tolerance = 0.02 if suffix in (".png", ".tif", ".bmp") else 0.15
    assert (x[0].permute(1, 2, 0).numpy() - photo / 255).__abs__().mean() < tolerance


def test_grey_rgba_palette_and_16_bit(tmp_path, photo):
    Image.fromarray(photo).convert("L").save(tmp_path / "grey.png")
    grey = convscope.load_image(tmp_path / "grey.png", size=None)
    assert torch.equal(grey[0, 0], grey[0, 1])
    rgba = np.concatenate([photo, np.zeros(photo.shape[:2] + (1,), np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert torch.allclose(convscope.load_image(tmp_path / "clear.png", size=None), torch.ones(1, 3, 64, 96))
    Image.fromarray(photo).convert("P").save(tmp_path / "palette.png")
    assert convscope.load_image(tmp_path / "palette.png", size=None).shape == (1, 3, 64, 96)
    deep = np.arange(64 * 96, dtype=np.uint16).reshape(64, 96) * 10
    Image.fromarray(deep).save(tmp_path / "deep.png")
    loaded = convscope.load_image(tmp_path / "deep.png", size=None)
    assert loaded[0, 0, -1, -1].item() == pytest.approx(deep[-1, -1] / 65535, abs=1e-4)


def test_arrays_and_pil(photo):
    assert convscope.load_image(photo, size=None).shape == (1, 3, 64, 96)
    assert convscope.load_image(Image.fromarray(photo), size=None).shape == (1, 3, 64, 96)
    assert convscope.load_image(photo.astype(np.float32) / 255, size=None).max() <= 1
    assert convscope.load_image(np.moveaxis(photo, -1, 0), size=None).shape == (1, 3, 64, 96)
    assert convscope.load_image(photo[..., 0] > 128, size=None).shape == (1, 3, 64, 96)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((8, 8, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.zeros((8, 8, 5)), "shape"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(ConvscopeError, match=message):
        convscope.load_image(array)


def test_bad_files(tmp_path, photo):
    with pytest.raises(ConvscopeError, match="no such image file"):
        convscope.load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ConvscopeError, match="cannot read image"):
        convscope.load_image(tmp_path / "notes.png")
    Image.fromarray(photo).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConvscopeError, match="cannot read image"):
        convscope.load_image(tmp_path / "cut.jpg")
    with pytest.raises(ConvscopeError, match="folder"):
        convscope.load_image(tmp_path)
    with pytest.raises(ConvscopeError, match="offline"):
        convscope.load_image("https://example.com/cat.jpg")


def test_folder_batches_skip_bad_files(tmp_path, photo):
    for index in range(5):
        Image.fromarray(photo).save(tmp_path / f"{index}.png")
    (tmp_path / "bad.png").write_text("nope")
    with pytest.warns(UserWarning, match="bad.png"):
        batches = list(load_folder(tmp_path, size=32, batch_size=2))
    assert [b.images.shape[0] for b in batches] == [2, 2, 1]
    assert all(p.suffix == ".png" for b in batches for p in b.paths)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvscopeError, match="no images"):
        list(load_folder(tmp_path / "empty"))
    with pytest.raises(ConvscopeError, match="no such folder"):
        list(load_folder(tmp_path / "missing"))


def test_save_round_trip(tmp_path):
    x = convscope.load_image("sample:coffee", size=48)
    save_image(x, tmp_path / "x.png")
    assert (convscope.load_image(tmp_path / "x.png", size=None) - x).abs().max() <= 1 / 255 + 1e-6
    save_image(torch.cat([x, x, x]), tmp_path / "grid.png", nrow=3)
    assert Image.open(tmp_path / "grid.png").size == (3 * 48 + 4 * 2, 48 + 2 * 2)
