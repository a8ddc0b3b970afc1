"""``finetune`` reads any labelled dataset spec through the data layer: sample sets, class folders
(one tree split per class, or train/ + val/), a second spec as the held-out set."""

import shutil

import pytest
import torch

from convscope.data import open_dataset, samples_folder
from convscope.errors import ConvscopeError
from convscope.transfer import dataset_split
from helpers import run_cli

try:
    samples_folder()
except ConvscopeError:  # the labelled samples are a test dependency (the Makefile installs them)
    pytest.skip("the labelled samples: pip install --no-deps foolbox==3.3.4", allow_module_level=True)


def test_dataset_split_of_sample_sets_folders_and_a_second_spec(tmp_path):
    train, val, skipped = dataset_split("samples:mnist", 32, seed=1, workers=0)
    source = open_dataset("samples:mnist", 32)
    present = sorted(set(source.labels))
    assert train.classes == tuple(str(label) for label in present) and not skipped
    assert len(train) + len(val) == 20 and train.images.shape[1:] == (3, 32, 32)
    counts = torch.bincount(torch.cat([train.labels, val.labels]), minlength=len(present))
    assert counts.tolist() == [source.labels.count(label) for label in present]  # relabelled 0..K-1 by id order
    again, _, _ = dataset_split("samples:mnist", 32, seed=1, workers=0)
    assert torch.equal(again.images, train.images)  # the split is seeded
    # class folders: train/ and val/ by name (val may lack classes, not add them); a broken file is skipped
    for path in sorted(samples_folder().glob("cifar10_*.png")):
        label = int(path.stem.rsplit("_", 1)[1])
        split = "val" if int(path.stem.split("_")[1]) >= 14 else "train"  # labels 5-9, all also in train
        (tmp_path / "tree" / split / f"class_{label}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / "tree" / split / f"class_{label}" / path.name)
    (tmp_path / "tree" / "train" / "class_0" / "broken.png").write_bytes(b"\x89PNG broken")
    train, val, skipped = dataset_split(tmp_path / "tree", 32, workers=0)
    assert train.classes == tuple(sorted(p.name for p in (tmp_path / "tree" / "train").iterdir()))
    assert {train.classes[int(i)] for i in val.labels} == {f"class_{label}" for label in (5, 6, 7, 8, 9)}
    assert len(train) + len(val) == 20 and skipped.summary() == "skipped 1 unreadable file: class_0/broken.png"
    with pytest.raises(ConvscopeError, match="classes class_0, class_1, class_3 are not in the training set"):
        dataset_split(tmp_path / "tree" / "val", 32, val=tmp_path / "tree" / "train", workers=0)
    with pytest.raises(ConvscopeError, match="training needs a label for every image; 7 of 7 have none"):
        dataset_split("photos", 32, workers=0)
    with pytest.raises(ConvscopeError, match=r"GiB in memory; train on a part of them \(--limit\)"):
        dataset_split("samples:mnist", 8192, workers=0)
    small, _, _ = dataset_split("samples:cifar10", 32, val="samples:cifar10", limit=5, workers=0)
    assert len(small) == 5


def test_finetune_command_on_a_sample_set(monkeypatch, capsys, tmp_path):
    code, text, err = run_cli(
        monkeypatch, capsys, "finetune", "samples:cifar10", "--epochs", "1", "--size", "32", "--workers", "0",
        "--device", "cpu", "-o", str(tmp_path / "ft"),
    )  # fmt: skip
    assert code == 0, err
    assert "samples:cifar10" in text and "val images" in text and (tmp_path / "ft" / "features.safetensors").is_file()
    code, _, err = run_cli(monkeypatch, capsys, "finetune", "photos", "--epochs", "1", "--device", "cpu")
    assert code == 2 and "training needs a label for every image" in err
