"""``segment train`` / ``segment eval`` streaming image/mask pairs from a folder (VOC and images/ + masks/)."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.errors import ConvscopeError
from helpers import run_cli


@pytest.fixture(scope="module")
def voc_folder(tmp_path_factory):
    """24 generated scenes at 32 px written in the VOC layout (PNG images, palette masks, classes.txt)."""
    from convscope.segmentation import generate_scenes, write_voc_folder

    return write_voc_folder(generate_scenes(24, size=32, seed=0), tmp_path_factory.mktemp("voc"))


def _train(monkeypatch, capsys, data, out, *extra):
    return run_cli(
        monkeypatch,
        capsys,
        "segment",
        "train",
        str(data),
        "--head",
        "unet",
        "--size",
        "32",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--device",
        "cpu",
        *extra,
    )


def test_segment_train_on_a_voc_folder_lowers_the_loss(monkeypatch, capsys, tmp_path, voc_folder):
    checkpoint = tmp_path / "unet.safetensors"
    code, out, err = _train(monkeypatch, capsys, voc_folder, checkpoint, "--epochs", "4")
    assert code == 0, err
    losses = [float(v) for v in re.findall(r"epoch \d+: loss ([0-9.]+)", out)]
    assert len(losses) == 4 and "held-out mIoU" in out
    # last / first epoch loss, seeds 0, 1, 2 (20 training pairs, batch 8, Adam 3e-3), 1 and 2 threads,
    # measured 2026-12-02: 0.793, 0.720, 0.734 (the same to 1e-4 at both thread counts); a flat loss is 1.0.
    assert losses[-1] / losses[0] < 0.9
    code, out, err = run_cli(
        monkeypatch, capsys, "segment", "eval", str(checkpoint), str(voc_folder), "--device", "cpu"
    )
    assert code == 0 and "mIoU" in out and "astronaut" in out, err


def _plain_folder(root, voc_folder, count=6):
    """The first ``count`` pairs of ``voc_folder`` in the images/ + masks/ layout."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text((voc_folder / "classes.txt").read_text())
    for path in sorted((voc_folder / "SegmentationClass").glob("*.png"))[:count]:
        (root / "masks" / path.name).write_bytes(path.read_bytes())
        (root / "images" / path.name).write_bytes((voc_folder / "JPEGImages" / path.name).read_bytes())
    return root


def test_a_corrupt_image_is_skipped_and_counted(monkeypatch, capsys, tmp_path, voc_folder):
    root = _plain_folder(tmp_path / "plain", voc_folder)
    broken = sorted((root / "images").iterdir())[2]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    code, out, err = _train(monkeypatch, capsys, root, tmp_path / "net.safetensors", "--epochs", "2")
    assert code == 0, err
    assert f"skipped 1 unreadable file: {broken.stem}" in err  # once, although it failed in both epochs
    assert len(re.findall(r"epoch \d+: loss", out)) == 2
    code, _, err = _train(monkeypatch, capsys, root, tmp_path / "net.safetensors", "--epochs", "1", "--strict")
    assert code == 2 and broken.stem in err and "--strict" in err and "Traceback" not in err


def test_a_mask_of_another_size_is_one_line(monkeypatch, capsys, tmp_path, voc_folder):
    root = _plain_folder(tmp_path / "plain", voc_folder)
    mask_path = sorted((root / "masks").iterdir())[1]
    with Image.open(mask_path) as mask:
        palette = mask.getpalette()
        small = Image.fromarray(np.asarray(mask)[:20, :24], mode="P")
    small.putpalette(palette)
    small.save(mask_path)
    code, out, err = _train(monkeypatch, capsys, root, tmp_path / "net.safetensors", "--epochs", "1", "--workers", "0")
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and mask_path.stem in err and "(20, 24)" in err and "(32, 32)" in err


def _striped_pair(root, height=40, width=80, stripes=4):
    """One images/ + masks/ pair, wider than tall: class = column // (width / stripes), and the
    image's grey level is class / (stripes - 1), so image and mask can be compared pixel by pixel."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(f"stripe{i}" for i in range(stripes)) + "\n")
    classes = (np.arange(width) // (width // stripes))[None].repeat(height, 0).astype(np.uint8)
    grey = np.round(classes / (stripes - 1) * 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(root / "images" / "a.png")
    Image.fromarray(classes, mode="L").save(root / "masks" / "a.png")
    return root


@pytest.mark.parametrize("preprocessing, kept", [("squash", {0, 1, 2, 3}), ("center-crop", {1, 2})])
def test_image_and_mask_are_fitted_alike(tmp_path, preprocessing, kept):
    """--preprocess: squash keeps the whole 40 x 80 picture; center-crop resizes the shorter side to 16 / 0.875
    (18 x 37) and keeps the centre 16 x 16 (original columns ~22-54: stripes 1 and 2). The mask follows the
    image's geometry: away from the stripe borders (bilinear blur there) grey level = class / 3."""
    from convscope.images import preprocess
    from convscope.segmentation import MaskFolder

    root = _striped_pair(tmp_path / "plain")
    image, mask, _ = MaskFolder(root, 16, preprocessing=preprocessing)[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16) and set(mask.unique().tolist()) == kept
    whole = torch.from_numpy(np.array(Image.open(root / "images" / "a.png"))).permute(2, 0, 1)[None] / 255
    torch.testing.assert_close(image, preprocess(whole, 16, preprocessing)[0])  # the shared preprocessing
    agree = (image[0] - mask / 3).abs() < 0.05
    assert agree.float().mean() > 0.9, agree.float().mean()  # measured: squash 1.0, center-crop 0.9375
    with pytest.raises(ConvscopeError, match="unknown preprocessing"):
        MaskFolder(root, 16, preprocessing="letterbox")


def test_loader_workers_stay_alive_over_the_passes_of_a_run(tmp_path, voc_folder):
    """A loader made for 2 passes (epochs) reads both with the same worker process; a one-pass loader
    read twice starts a new worker each time."""
    import os

    from convscope.segmentation import open_mask_folder

    part = open_mask_folder(voc_folder, 16, workers=1)
    part.dataset = _PidNames(part.dataset)

    def workers_of(loader):
        return [
            {name.split("@")[1] for name in batch.ids} for _ in range(2) for batch in part.batches(8, loader=loader)
        ]

    kept = workers_of(part.loader(8, passes=2))
    assert len(set.union(*kept)) == 1 and str(os.getpid()) not in set.union(*kept)
    renewed = workers_of(part.loader(8))
    assert len(set.union(*renewed)) == 2


class _PidNames(torch.utils.data.Dataset):
    """A mask folder whose ids say which process read them (``NAME@pid``)."""

    def __init__(self, folder):
        self.folder, self.ids = folder, folder.ids

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, index):
        import os

        image, mask, name = self.folder[index]
        return image, mask, f"{name}@{os.getpid()}"


def test_eval_and_predict_fit_the_data_as_training_did(monkeypatch, capsys, tmp_path, voc_folder):
    """`segment train --preprocess center-crop` records it in the checkpoint; `segment eval` then scores
    with it unless told otherwise (and warns when told otherwise); files without the key read as squash."""
    import json

    from convscope.segmentation.checkpoint import load_segmenter

    checkpoint = tmp_path / "unet.safetensors"
    code, _, err = _train(monkeypatch, capsys, voc_folder, checkpoint, "--epochs", "1", "--preprocess", "center-crop")
    assert code == 0, err
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    assert meta["preprocess"] == "center-crop" and load_segmenter(checkpoint).preprocess == "center-crop"

    import convscope.images
    import convscope.segmentation

    fitted = []  # the preprocessing each command's data went through

    def spy(real, position):
        def wrapper(*args):
            fitted.append(args[position])
            return real(*args)

        return wrapper

    monkeypatch.setattr(convscope.segmentation, "open_mask_folder", spy(convscope.segmentation.open_mask_folder, 5))
    monkeypatch.setattr(convscope.images, "load_images", spy(convscope.images.load_images, 2))

    def run(*extra):
        code, out, err = run_cli(monkeypatch, capsys, "segment", *extra, "--device", "cpu")
        assert code == 0, err
        return err

    assert "warning" not in run("eval", str(checkpoint), str(voc_folder))
    assert "warning" not in run("eval", str(checkpoint), str(voc_folder), "--preprocess", "center-crop")
    warned = run("eval", str(checkpoint), str(voc_folder), "--preprocess", "squash")
    assert "trained on data fitted by center-crop; scoring with squash" in warned
    run("predict", str(checkpoint), "sample:astronaut", "--out", str(tmp_path / "p.png"))
    assert fitted == ["center-crop", "center-crop", "squash", "center-crop"] and (tmp_path / "p.png").is_file()

    del meta["preprocess"]  # a checkpoint of an earlier version
    checkpoint.with_suffix(".json").write_text(json.dumps(meta))
    assert load_segmenter(checkpoint.with_suffix(".json")).preprocess == "squash"
    meta["preprocess"] = "letterbox"
    checkpoint.with_suffix(".json").write_text(json.dumps(meta))
    code, _, err = run_cli(
        monkeypatch, capsys, "segment", "eval", str(checkpoint.with_suffix(".json")), str(voc_folder)
    )
    assert code == 2 and "unknown preprocessing 'letterbox'" in err and len(err.strip().splitlines()) == 1
