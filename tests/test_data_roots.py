"""The torchvision-style roots (CIFAR-100, MNIST / Fashion-MNIST, SVHN, ImageNet), each built in its
real on-disk layout from the labelled samples of the foolbox wheel: images and labels come back
exactly; pickle-based files go through the array-only unpickler; files the reader does not need
(ImageNet's meta.bin, CIFAR's meta) are never unpickled."""

import gzip
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.data import imagenet_wnids, open_dataset, samples_folder, stream
from convscope.errors import ConvscopeError

try:
    samples_folder()
except ConvscopeError:  # the labelled samples are a test dependency (the Makefile installs them)
    pytest.skip("the labelled samples: pip install --no-deps foolbox==3.3.4", allow_module_level=True)


def samples(prefix: str) -> tuple[np.ndarray, list[int]]:
    """The 20 sample files of one set as their uint8 pixels (N, H, W[, 3]) and labels (from the names)."""
    files = sorted(p for p in samples_folder().glob(f"{prefix}_*.png") if p.stem.count("_") == 2)
    assert len(files) == 20
    return np.stack([np.asarray(Image.open(p)) for p in files]), [int(p.stem.rsplit("_", 1)[1]) for p in files]


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) -> what the data layer must return: (3, H, W) float = value / 255."""
    image = torch.from_numpy(pixels.copy()).float() / 255
    return image.expand(3, -1, -1) if image.ndim == 2 else image.permute(2, 0, 1)


def check_exact(data, pixels: np.ndarray, labels: list[int]) -> None:
    assert len(data) == len(labels) and data.labels == labels
    for i in range(len(labels)):
        image, label, _ = data[i]
        assert label == labels[i] and torch.equal(image, as_tensor(pixels[i])), i


class Evil:
    """A pickle that would delete a folder when unpickled."""

    def __init__(self, victim):
        self.victim = str(victim)

    def __reduce__(self):
        return (shutil.rmtree, (self.victim,))


def test_cifar100_python_batches_exactly_and_code_refused(tmp_path):
    pixels, fine = samples("cifar100")
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rows = pixels.transpose(0, 3, 1, 2).reshape(20, -1)  # the release's rows: 1024 R, 1024 G, 1024 B
    for name, part, protocol in (("test", slice(0, 12), 2), ("train", slice(12, 20), 4)):
        batch = {
            b"filenames": [f"img_{i}.png".encode() for i in range(20)][part],
            b"batch_label": f"{name}ing batch 1 of 1".encode(),
            b"fine_labels": fine[part],
            b"coarse_labels": [label // 5 for label in fine[part]],
            b"data": rows[part],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))  # as Python 2 (the release) or 3 writes
    victim = tmp_path / "victim"
    victim.mkdir()
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": Evil(victim)}, protocol=2))
    check_exact(open_dataset(f"cifar100:{tmp_path}", size=None), pixels[:12], fine[:12])
    check_exact(open_dataset(f"cifar100-train:{tmp_path}", size=None), pixels[12:], fine[12:])
    assert victim.is_dir()  # meta is never read
    (folder / "test").write_bytes(pickle.dumps({b"data": Evil(victim), b"fine_labels": []}, protocol=2))
    with pytest.raises(ConvscopeError, match="refusing to unpickle shutil.rmtree from a CIFAR batch file"):
        open_dataset(f"cifar100:{tmp_path}", size=None)
    assert victim.is_dir()

    class Codec:  # bytes "decoded" through another codec than latin-1 (the one protocol 2 uses)
        def __reduce__(self):
            import codecs

            return (codecs.encode, ("x", "rot13"))

    (folder / "test").write_bytes(pickle.dumps({b"data": Codec(), b"fine_labels": []}, protocol=2))
    with pytest.raises(ConvscopeError, match="other than latin-1"):
        open_dataset(f"cifar100:{tmp_path}", size=None)
    (folder / "test").write_bytes(b"\x80\x02}q\x00(X\x04")  # a truncated pickle: one line
    with pytest.raises(ConvscopeError, match="cannot read .*test"):
        open_dataset(f"cifar100:{tmp_path}", size=None)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (LeCun's format, what MNIST ships): 0 0 0x08 ndim, big-endian sizes, bytes."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_root(raw, images, labels, prefix: str, kind: str) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if kind in ("raw", "both"):
            (raw / name).write_bytes(data)
        if kind in ("gz", "both"):
            (raw / f"{name}.gz").write_bytes(gzip.compress(data))


def test_mnist_and_fashion_mnist_idx_files_raw_and_gz_exactly(tmp_path):
    from torchvision.datasets import MNIST

    pixels, labels = samples("mnist")
    targets = np.array(labels, dtype=np.uint8)
    # torchvision's layout after a download: ROOT/MNIST/raw with the .gz files and their extracted copies
    write_idx_root(tmp_path / "tv" / "MNIST" / "raw", pixels[:15], targets[:15], "t10k", "both")
    write_idx_root(tmp_path / "tv" / "MNIST" / "raw", pixels[15:], targets[15:], "train", "both")
    data = open_dataset(f"mnist:{tmp_path / 'tv'}", size=None)
    check_exact(data, pixels[:15], labels[:15])
    check_exact(open_dataset(f"mnist-train:{tmp_path / 'tv'}", size=None), pixels[15:], labels[15:])
    reference = MNIST(str(tmp_path / "tv"), train=False, download=False)  # torchvision reads the same root
    assert torch.equal(reference.data, torch.from_numpy(pixels[:15])) and reference.targets.tolist() == labels[:15]
    # only the .gz files, as released
    write_idx_root(tmp_path / "gz" / "MNIST" / "raw", pixels, targets, "t10k", "gz")
    check_exact(open_dataset(f"mnist:{tmp_path / 'gz'}", size=None), pixels, labels)
    fashion, fashion_labels = samples("fashionMNIST")
    write_idx_root(tmp_path / "fa" / "FashionMNIST" / "raw", fashion, np.array(fashion_labels, np.uint8), "t10k", "raw")
    data = open_dataset(f"fashion-mnist:{tmp_path / 'fa'}", size=32)  # through the loader, at a model's size
    check_exact(open_dataset(f"fashion-mnist:{tmp_path / 'fa'}", size=None), fashion, fashion_labels)
    batches = list(stream(data, 8, workers=0))
    assert [b.images.shape[0] for b in batches] == [8, 8, 4] and batches[0].images.shape[1:] == (3, 32, 32)
    assert torch.cat([b.labels for b in batches]).tolist() == fashion_labels
    # hostile or damaged files: one line each, nothing allocated from a lying header
    raw = tmp_path / "gz" / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(pixels)[:-100])
    with pytest.raises(ConvscopeError, match="header announces 15680 bytes of data, the file holds 15580"):
        open_dataset(f"mnist:{tmp_path / 'gz'}")
    (raw / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**20, 2**10, 2**10))
    with pytest.raises(ConvscopeError, match="announces 1099511627776 bytes of data .*not read"):
        open_dataset(f"mnist:{tmp_path / 'gz'}")
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x89PNG not an idx file")
    with pytest.raises(ConvscopeError, match="is not an IDX file of unsigned bytes with 3 dimension"):
        open_dataset(f"mnist:{tmp_path / 'gz'}")
    with pytest.raises(ConvscopeError, match="no t10k-images-idx3-ubyte.*nothing is downloaded"):
        open_dataset(f"mnist:{tmp_path / 'nowhere'}")


def test_svhn_mat_file_exactly_with_digit_zero_stored_as_ten(tmp_path):
    from scipy.io import savemat

    pixels, labels = samples("cifar10")  # real 32 x 32 colour images in SVHN's layout
    digits = [label % 10 for label in labels]
    assert 0 in digits
    stored = np.array([[d if d else 10] for d in digits], dtype=np.uint8)  # the release's y: 1..10
    savemat(tmp_path / "test_32x32.mat", {"X": np.ascontiguousarray(pixels.transpose(1, 2, 3, 0)), "y": stored})
    check_exact(open_dataset(f"svhn:{tmp_path}", size=None), pixels, digits)
    savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3), np.uint8), "y": stored})
    with pytest.raises(ConvscopeError, match=r"expected X as uint8 \(32, 32, 3, N\)"):
        open_dataset(f"svhn-train:{tmp_path}")
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 7.3 MAT-file, but not really")
    with pytest.raises(ConvscopeError, match="cannot read .*train_32x32.mat"):
        open_dataset(f"svhn-train:{tmp_path}")


def test_imagenet_root_as_torchvision_leaves_it_and_the_kaggle_layout(model, tmp_path):
    files = sorted(p for p in samples_folder().glob("imagenet_*.jpg"))[:6]
    labels = [int(p.stem.rsplit("_", 1)[1]) for p in files]
    wnids = imagenet_wnids()
    for split in ("val", "train"):  # torchvision's ImageNet after parsing: ROOT/{train,val}/WNID/*.JPEG
        for number, (path, label) in enumerate(zip(files, labels), start=1):
            (tmp_path / "tv" / split / wnids[label]).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tmp_path / "tv" / split / wnids[label] / f"ILSVRC2012_val_{number:08d}.JPEG")
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "tv" / "meta.bin").write_bytes(pickle.dumps(Evil(victim)))  # torchvision torch.load()s it; we don't
    reference = open_dataset("samples:imagenet", size=64)
    expected = {p.name: reference[i][0] for i, p in enumerate(sorted(samples_folder().glob("imagenet_*.jpg")))}
    for spec in (f"imagenet:{tmp_path / 'tv'}", f"imagenet-train:{tmp_path / 'tv'}"):
        data = open_dataset(spec, size=64, labels=model.labels)
        assert data.layout == "class-folders" and sorted(data.labels) == sorted(labels)
        for i in range(len(data)):
            image, label, name = data[i]
            source = files[int(name.split("_")[-1].split(".")[0]) - 1]
            assert name.startswith(wnids[label]) and label == int(source.stem.rsplit("_", 1)[1])
            assert torch.equal(image, expected[source.name])
    assert victim.is_dir()
    # Kaggle's layout: a flat val/ with LOC_val_solution.csv next to it
    (tmp_path / "kaggle" / "val").mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for number, (path, label) in enumerate(zip(files, labels), start=1):
        shutil.copy(path, tmp_path / "kaggle" / "val" / f"ILSVRC2012_val_{number:08d}.JPEG")
        rows.append(f"ILSVRC2012_val_{number:08d},{wnids[label]} 10 20 200 220")
    (tmp_path / "kaggle" / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    data = open_dataset(f"imagenet:{tmp_path / 'kaggle'}", size=64, labels=model.labels)
    assert data.layout == "flat-labelled" and data.labels == labels
    assert all(torch.equal(data[i][0], expected[files[i].name]) for i in range(6))
    with pytest.raises(ConvscopeError, match="holds train/ and val/ with WordNet-ID folders"):
        open_dataset(f"imagenet:{tmp_path / 'victim'}")
