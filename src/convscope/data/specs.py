"""Dataset specs -> ``torch.utils.data.Dataset`` of ``(image (3, H, W) in [0, 1], label | None, id)``.

Accepted specs (:func:`open_dataset`):

* ``samples:imagenet`` | ``samples:cifar10`` | ``samples:cifar100`` | ``samples:mnist`` |
  ``samples:fashion-mnist``: 20 real labelled images each (ImageNet validation JPEGs, test-set
  images), the files the ``foolbox`` wheel (MIT) ships, read from the installed package without
  importing it (``pip install --no-deps foolbox==3.3.4``, ``make samples`` or the ``samples`` extra).
* ``photos``: the bundled scikit-image photos (unlabelled; pictures, not an evaluation set).
* a folder, its layout detected: class subfolders named by class id, class name or WordNet ID;
  ImageNet's flat validation folder with ``LOC_val_solution.csv`` (in it or its parent) or
  ``labels=FILE`` (``file label`` lines); the released ImageNet-C / Tiny-ImageNet-C tree
  ``CORRUPTION/SEVERITY/WNID/*.JPEG``; CIFAR-10-C's ``CORRUPTION.npy`` + ``labels.npy``
  (memory-mapped); or a plain folder of images (unlabelled).
* torchvision-style roots the user already has (nothing is downloaded): ``cifar10:ROOT``,
  ``cifar100:ROOT`` (the python batches, read with an unpickler that only builds numpy
  arrays), ``mnist:ROOT``, ``fashion-mnist:ROOT`` (IDX files, raw or .gz), ``svhn:ROOT`` (.mat),
  ``imagenet:ROOT`` (``ROOT/val/WNID/*``); ``NAME-train:ROOT`` for the training split.
* ``digits`` | ``digits-train``: scikit-learn's 8 × 8 digits (offline), the fixed stratified test /
  train split of ``convscope train digits``, upsampled to ``size`` (16 when none) exactly as that
  command does (bilinear), so ``attack-eval digits -m CHECKPOINT`` sees the images it was tested on.
* any ``Dataset`` of ``(image, label)`` / ``(image, label, id)`` / images, from Python.

Images are preprocessed to the model's size with torchvision's convention (``crop``: resize the
shorter side to ``size / 0.875``, antialiased bilinear, then take the centre ``size x size``);
``resize`` squashes to ``size x size``; ``none`` keeps the decoded size. An image already at
``size x size`` is left as it is.
"""

from __future__ import annotations

__all__ = [
    "ArrayDataset",
    "Cifar10C",
    "CROP_RATIO",
    "digits_images",
    "FileDataset",
    "ImageDataset",
    "labelled_pairs",
    "LabelledPairs",
    "open_dataset",
    "open_folder",
    "PhotoDataset",
    "PREPROCESS",
    "Preprocess",
    "read_label_file",
    "sample_dataset",
    "SAMPLE_SETS",
    "samples_folder",
    "Take",
    "take",
    "TORCHVISION_ROOTS",
    "WrappedDataset",
]

import csv
import importlib.metadata
import io
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConvscopeError
from ..images import IMAGE_SUFFIXES, PHOTOS, array_to_tensor, read_image_file, sample_array
from .classes import ClassNames, folder_classes

CROP_RATIO = 0.875
PREPROCESS = ("crop", "resize", "none")
SAMPLE_SETS = {
    "imagenet": "imagenet",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "mnist": "mnist",
    "fashion-mnist": "fashionMNIST",
}


class Preprocess:
    """Image (3, H, W) -> (3, size, size) by ``mode`` (see the module notes); picklable for workers."""

    def __init__(self, size: int | None = None, mode: str = "crop"):
        if mode not in PREPROCESS:
            raise ConvscopeError(f"unknown preprocessing {mode!r}; known: {', '.join(PREPROCESS)}")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ConvscopeError(f"image size must be a positive integer, got {size!r}")
        self.size, self.mode = size, mode

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        size = self.size
        if size is None or self.mode == "none" or tuple(image.shape[-2:]) == (size, size):
            return image
        if self.mode == "resize":
            return _resize(image, (size, size))
        height, width = image.shape[-2:]
        short = round(size / CROP_RATIO)
        scale = short / min(height, width)
        inner = (max(size, round(height * scale)), max(size, round(width * scale)))
        image = _resize(image, inner)
        top, left = (inner[0] - size) // 2, (inner[1] - size) // 2
        return image[:, top : top + size, left : left + size].contiguous()


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


class ImageDataset(torch.utils.data.Dataset):
    """Base of the file and array datasets: ``items`` decoded lazily, ``classes`` when known.

    Attributes:
        ids: one string per item (a path relative to the root, or ``set/index``).
        labels: class id per item, or None where unknown.
        groups: ``(corruption, severity)`` per item for the corruption layouts, else None.
        layout: what was detected (``class-folders``, ``flat-labelled``, ``imagenet-c``, ...).
    """

    layout = "images"

    def __init__(self, preprocess: Preprocess):
        self.preprocess = preprocess
        self.ids: list[str] = []
        self.labels: list[int | None] = []
        self.groups: list[tuple[str, int]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, index: int) -> torch.Tensor:  # pragma: no cover - every layout overrides it
        raise NotImplementedError

    def __getitem__(self, index: int):
        return self.preprocess(self.read(index)), self.labels[index], self.ids[index]

    @property
    def labelled(self) -> bool:
        return bool(self.labels) and all(label is not None for label in self.labels)

    def describe(self) -> str:
        known = sum(label is not None for label in self.labels)
        return f"{len(self)} images ({self.layout}; {known} labelled)"


class FileDataset(ImageDataset):
    """Image files with optional labels (and corruption groups)."""

    def __init__(
        self,
        root: Path,
        files: Sequence[Path],
        labels: Sequence[int | None],
        preprocess: Preprocess,
        layout: str,
        groups: Sequence[tuple[str, int]] | None = None,
    ):
        super().__init__(preprocess)
        self.root, self.files, self.layout = Path(root), [Path(f) for f in files], layout
        self.ids = [_relative(f, self.root) for f in self.files]
        self.labels = list(labels)
        self.groups = list(groups) if groups is not None else None
        self.classes: dict[int, str] = {}

    def read(self, index: int) -> torch.Tensor:
        size = self.preprocess.size if self.preprocess.mode != "none" else None
        return read_image_file(self.files[index], None if size is None else (size, size))


class ArrayDataset(ImageDataset):
    """Images held in (or memory-mapped from) uint8 arrays (N, H, W[, C])."""

    def __init__(self, arrays, labels, ids, preprocess: Preprocess, layout: str, groups=None):
        super().__init__(preprocess)
        self.arrays, self.layout = arrays, layout
        self.labels, self.ids = list(labels), list(ids)
        self.groups = list(groups) if groups is not None else None

    def read(self, index: int) -> torch.Tensor:
        return array_to_tensor(np.array(self.arrays[index]))


def digits_images(
    size: int = 16, split: str = "test", test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as RGB images (N, 3, size, size) in [0, 1] (bilinear from 8 × 8) and labels
    0-9: the fixed stratified split (``seed``) ``"train"`` or ``"test"``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ConvscopeError(f"split must be 'train' or 'test', got {split!r}")
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_ids, test_ids = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=test_fraction, random_state=seed, stratify=labels.numpy()
    )
    ids = torch.as_tensor(train_ids if split == "train" else test_ids)
    return images[ids].expand(-1, 3, -1, -1).contiguous(), labels[ids]


class DigitsDataset(ImageDataset):
    """The ``digits`` / ``digits-train`` spec: :func:`digits_images` at the preprocessing's size."""

    layout = "digits"

    def __init__(self, preprocess: Preprocess, train: bool = False):
        super().__init__(preprocess)
        split = "train" if train else "test"
        self.images, labels = digits_images(preprocess.size or 16, split)
        self.labels = labels.tolist()
        self.ids = [f"digits-{split}/{i}" for i in range(len(self.labels))]

    def read(self, index: int) -> torch.Tensor:
        return self.images[index]


class Cifar10C(ImageDataset):
    """CIFAR-10-C as released: ``CORRUPTION.npy`` (50000 x 32 x 32 x 3, severities 1..5 in blocks
    of 10000) and ``labels.npy``, memory-mapped (reopened lazily in each worker process)."""

    layout = "cifar10-c"

    def __init__(self, root: Path, corruptions: Sequence[str], preprocess: Preprocess):
        super().__init__(preprocess)
        self.root, self.corruptions = Path(root), list(corruptions)
        labels = _npy(self.root / "labels.npy")
        if labels.ndim != 1 or labels.shape[0] % 5:
            raise ConvscopeError(
                f"{self.root / 'labels.npy'}: expected one label per image in 5 severity blocks, "
                f"got shape {labels.shape}"
            )
        self.block = labels.shape[0] // 5
        self._maps: dict[str, np.ndarray] = {}
        for name in self.corruptions:
            array = self._map(name)
            if array.shape[0] != labels.shape[0] or array.ndim != 4:
                raise ConvscopeError(
                    f"{self.root / (name + '.npy')}: expected {labels.shape[0]} images (N, H, W, 3), "
                    f"got shape {array.shape}"
                )
        self.count = labels.shape[0]
        self.labels = [int(v) for v in np.asarray(labels)] * len(self.corruptions)
        self.groups = [(name, 1 + i // self.block) for name in self.corruptions for i in range(self.count)]
        self.ids = [
            f"{name}/{i // self.block + 1}/{i % self.block}" for name in self.corruptions for i in range(self.count)
        ]

    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            self._maps[name] = _npy(self.root / f"{name}.npy")
        return self._maps[name]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def read(self, index: int) -> torch.Tensor:
        name = self.corruptions[index // self.count]
        return array_to_tensor(np.array(self._map(name)[index % self.count]))


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConvscopeError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


class WrappedDataset(torch.utils.data.Dataset):
    """A user's ``Dataset`` whose items are an image, ``(image, label)`` or ``(image, label, id)``."""

    layout = "python"

    def __init__(self, dataset, preprocess: Preprocess):
        self.dataset, self.preprocess = dataset, preprocess
        self.groups = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        label, name = None, str(index)
        if isinstance(item, (tuple, list)):
            image = item[0]
            label = item[1] if len(item) > 1 else None
            name = str(item[2]) if len(item) > 2 else name
        else:
            image = item
        if isinstance(image, torch.Tensor):
            image = image.detach().float().cpu()
            if image.ndim == 2:
                image = image[None]
            image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
            if image.ndim != 3 or image.shape[0] != 3:
                raise ConvscopeError(f"item {index}: expected an image (3, H, W), got {tuple(image.shape)}")
            if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
                raise ConvscopeError(f"item {index}: image values must lie in [0, 1] (unnormalised RGB)")
        else:
            from PIL import Image

            image = _pil(image) if isinstance(image, Image.Image) else array_to_tensor(np.asarray(image))
        if isinstance(label, torch.Tensor):
            label = int(label)
        label = None if label is None or (isinstance(label, int) and label < 0) else int(label)
        return self.preprocess(image), label, name

    @property
    def labelled(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{len(self)} items ({type(self.dataset).__name__})"


def _pil(image):
    from ..images import pil_to_tensor

    return pil_to_tensor(image)


class PhotoDataset(ImageDataset):
    """The bundled scikit-image photos (unlabelled)."""

    layout = "photos"

    def __init__(self, preprocess: Preprocess, names: Sequence[str] = PHOTOS):
        super().__init__(preprocess)
        self.ids = [f"sample:{name}" for name in names]
        self.labels = [None] * len(self.ids)

    def read(self, index: int) -> torch.Tensor:
        return array_to_tensor(sample_array(self.ids[index].split(":", 1)[1]))


class Take(torch.utils.data.Dataset):
    """The first ``count`` items of a dataset, keeping its ids, labels and groups."""

    def __init__(self, dataset, count: int):
        self.dataset, self.count = dataset, min(count, len(dataset))
        self.ids: list | None
        self.labels: list | None
        self.groups: list | None
        self.layout = getattr(dataset, "layout", "python")
        for name in ("ids", "labels", "groups"):
            value = getattr(dataset, name, None)
            setattr(self, name, list(value[: self.count]) if value is not None else None)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if index >= self.count:
            raise IndexError(index)
        return self.dataset[index]

    @property
    def labelled(self) -> bool:
        return self.labels is None or all(label is not None for label in self.labels)


class LabelledPairs(torch.utils.data.Dataset):
    """A labelled dataset as ``(image, label)`` items, for training loops."""

    def __init__(self, dataset):
        labels = getattr(dataset, "labels", None)
        if not labels or any(label is None for label in labels):
            missing = sum(label is None for label in labels or [None])
            raise ConvscopeError(
                f"training needs a label for every image; {missing} of {len(dataset)} have none "
                "(class subfolders, a label file or a labelled set)"
            )
        self.dataset, self.labels = dataset, list(labels)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label, _ = self.dataset[index]
        return image, label


def labelled_pairs(dataset) -> LabelledPairs:
    """``(image, label)`` items of a labelled dataset (every item must have a label)."""
    return LabelledPairs(dataset)


def take(dataset, count: int):
    """The first ``count`` items of ``dataset`` (``--limit``)."""
    if count < 1:
        raise ConvscopeError(f"a limit must be at least 1, got {count}")
    return dataset if count >= len(dataset) else Take(dataset, count)


# ---------------------------------------------------------------------------------------- specs


def samples_folder() -> Path:
    """The folder of real labelled samples the ``foolbox`` wheel ships (without importing foolbox)."""
    try:
        distribution = importlib.metadata.distribution("foolbox")
    except importlib.metadata.PackageNotFoundError:
        raise ConvscopeError(
            "the labelled samples (samples:imagenet, ...) come from the foolbox wheel: "
            "pip install --no-deps foolbox==3.3.4 (or make samples)"
        ) from None
    for entry in distribution.files or []:
        if str(entry).replace("\\", "/").startswith("foolbox/data/"):
            return Path(distribution.locate_file(entry)).parent
    raise ConvscopeError("the installed foolbox has no data/ folder; reinstall foolbox==3.3.4")


def sample_dataset(name: str, preprocess: Preprocess) -> FileDataset:
    """``samples:NAME``: the 20 labelled images of one set (labels in the file names)."""
    if name not in SAMPLE_SETS:
        raise ConvscopeError(f"unknown sample set {name!r}; known: {', '.join('samples:' + s for s in SAMPLE_SETS)}")
    folder = samples_folder()
    prefix = SAMPLE_SETS[name] + "_"
    files = sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.stem[len(prefix) :].count("_") == 1)
    if not files:
        raise ConvscopeError(f"no {name} samples in {folder}")
    labels = [int(p.stem.rsplit("_", 1)[1]) for p in files]
    dataset = FileDataset(folder, files, labels, preprocess, f"samples:{name}")
    dataset.ids = [f"samples:{name}/{p.name}" for p in files]
    return dataset


def open_dataset(
    spec,
    size: int | None = None,
    preprocess: str = "crop",
    labels: Sequence[str] | None = None,
    num_classes: int | None = None,
    label_file: str | Path | None = None,
    corruptions: Sequence[str] | None = None,
):
    """Resolve a dataset spec (see the module notes) to a ``Dataset`` of ``(image, label | None, id)``.

    Args:
        spec: a spec string or path, or a ``Dataset`` from Python.
        size, preprocess: output side and how to get there (``crop`` | ``resize`` | ``none``).
        labels, num_classes: the model's class names / count: class folders and label files must
            name its classes (ids, names or WordNet IDs); None numbers folders in sorted order.
        label_file: labels of a flat folder (``LOC_val_solution.csv`` or ``file label`` lines).
        corruptions: for the corruption layouts, which corruptions to read (default: all present).

    >>> data = open_dataset("samples:imagenet", size=224)
    >>> image, label, name = data[0]
    """
    transform = Preprocess(size, preprocess)
    if isinstance(spec, torch.utils.data.Dataset) and not isinstance(spec, (ImageDataset, WrappedDataset, Take)):
        return WrappedDataset(spec, transform)
    if isinstance(spec, (ImageDataset, WrappedDataset, Take)):
        return spec
    text = str(spec)
    if text.startswith("samples:"):
        return sample_dataset(text.split(":", 1)[1], transform)
    if text in ("photos", "samples"):
        return PhotoDataset(transform)
    if text in ("digits", "digits-train"):
        return DigitsDataset(transform, train=text == "digits-train")
    head, _, rest = text.partition(":")
    if rest and head.lower() in TORCHVISION_ROOTS and not Path(text).exists():
        return TORCHVISION_ROOTS[head.lower()](Path(rest), transform, labels, num_classes)
    if head.lower().removesuffix("-train") in TORCHVISION_ROOTS and rest and not Path(text).exists():
        return TORCHVISION_ROOTS[head.lower().removesuffix("-train")](
            Path(rest), transform, labels, num_classes, train=True
        )
    root = Path(text)
    if not root.exists():
        raise ConvscopeError(
            f"{text!r} is not a folder, a samples:NAME set ({', '.join(SAMPLE_SETS)}), digits or "
            f"NAME:ROOT ({', '.join(TORCHVISION_ROOTS)})"
        )
    if not root.is_dir():
        raise ConvscopeError(f"{root} is a file; give a folder of images (or a dataset spec)")
    return open_folder(root, transform, labels, num_classes, label_file, corruptions)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def open_folder(root: Path, transform: Preprocess, labels=None, num_classes=None, label_file=None, corruptions=None):
    """Detect the layout of ``root`` and open it (see :func:`open_dataset`)."""
    from ..robustness.corruptions import CORRUPTIONS

    if (root / "labels.npy").is_file():
        present = [p.stem for p in sorted(root.glob("*.npy")) if p.stem != "labels"]
        chosen = _choose(present, corruptions, root)
        return Cifar10C(root, chosen, transform)
    subfolders = sorted(p for p in root.iterdir() if p.is_dir())
    corruption_dirs = [
        p
        for p in subfolders
        if p.name in CORRUPTIONS and any(q.is_dir() and q.name in "12345" and len(q.name) == 1 for q in p.iterdir())
    ]
    if corruption_dirs and len(corruption_dirs) == len(subfolders):
        return _imagenet_c(
            root, _choose([p.name for p in corruption_dirs], corruptions, root), transform, labels, num_classes
        )
    if label_file is None:
        for candidate in (root / "LOC_val_solution.csv", root.parent / "LOC_val_solution.csv"):
            if candidate.is_file() and _images_in(root):
                label_file = candidate
                break
    if label_file is not None:
        return _flat_labelled(root, Path(label_file), transform, labels, num_classes)
    loose = _images_in(root)
    classed = [p for p in subfolders if not p.name.startswith(".")]
    files, targets = list(loose), [None] * len(loose)
    if classed:
        mapping = folder_classes([p.name for p in classed], labels, num_classes)
        for folder in classed:
            inside = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            files += inside
            targets += [mapping[folder.name]] * len(inside)
    if not files:
        raise ConvscopeError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    dataset = FileDataset(root, files, targets, transform, "class-folders" if classed else "flat")
    dataset.classes = {
        v: k for k, v in (folder_classes([p.name for p in classed], labels, num_classes).items() if classed else [])
    }
    return dataset


def _choose(present: Sequence[str], wanted: Sequence[str] | None, root: Path) -> list[str]:
    if not present:
        raise ConvscopeError(f"no corruption files/folders in {root}")
    if wanted is None:
        return list(present)
    missing = [name for name in wanted if name not in present]
    if missing:
        raise ConvscopeError(f"{root} has no {', '.join(missing)}; it has {', '.join(present)}")
    return list(wanted)


def _imagenet_c(root: Path, corruptions: Sequence[str], transform, labels, num_classes) -> FileDataset:
    """``CORRUPTION/SEVERITY/CLASS/*.JPEG`` (ImageNet-C, Tiny-ImageNet-C, any corruption tree)."""
    files, targets, groups, names = [], [], [], set()
    for corruption in corruptions:
        for severity in sorted((root / corruption).iterdir()):
            if not (severity.is_dir() and severity.name.isdigit()):
                continue
            for folder in sorted(p for p in severity.iterdir() if p.is_dir()):
                inside = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
                files += inside
                targets += [folder.name] * len(inside)
                groups += [(corruption, int(severity.name))] * len(inside)
                names.add(folder.name)
    if not files:
        raise ConvscopeError(f"no images in the corruption tree {root}")
    mapping = folder_classes(sorted(names), labels, num_classes if num_classes else (None if labels else 1000))
    return FileDataset(root, files, [mapping[t] for t in targets], transform, "imagenet-c", groups)


def read_label_file(path: Path, labels=None, num_classes=None) -> dict[str, int]:
    """``LOC_val_solution.csv`` (ImageId, first WordNet ID of PredictionString) or ``file label`` lines."""
    resolver = ClassNames(labels, num_classes if num_classes or labels else 1000)
    if not path.is_file():
        raise ConvscopeError(f"no such label file: {path}")
    table: dict[str, int] = {}
    text = path.read_text(errors="replace")
    if path.suffix.lower() == ".csv" and text.lstrip().lower().startswith("imageid"):
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if number == 1 or not row:
                continue
            if len(row) < 2 or not row[1].split():
                raise ConvscopeError(f"{path}, line {number}: expected ImageId,PredictionString")
            table[row[0]] = resolver.require(row[1].split()[0], f"{path}, line {number}: ")
        return table
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts or line.lstrip().startswith("#"):
            continue
        if len(parts) < 2:
            raise ConvscopeError(f"{path}, line {number}: expected 'file label', got {line.strip()!r}")
        table[Path(parts[0]).stem] = resolver.require(" ".join(parts[1:]), f"{path}, line {number}: ")
    return table


def _flat_labelled(root: Path, label_file: Path, transform, labels, num_classes) -> FileDataset:
    table = read_label_file(label_file, labels, num_classes)
    files = _images_in(root)
    if not files:
        raise ConvscopeError(f"no images in {root}")
    targets = [table.get(p.stem) for p in files]
    if all(t is None for t in targets):
        raise ConvscopeError(f"{label_file} names none of the {len(files)} images in {root}")
    return FileDataset(root, files, targets, transform, "flat-labelled")


# ----------------------------------------------------------------------- torchvision-style roots


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the CIFAR python batches: dicts, lists, strings and numpy arrays, nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles written by Python 3 store bytes
            return _latin1_bytes
        raise ConvscopeError(f"refusing to unpickle {module}.{name} from a CIFAR batch file (only arrays are read)")


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode`` as protocol 2 uses it (``(str, "latin1") -> bytes``), and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ConvscopeError("refusing a CIFAR batch file that encodes data other than latin-1 bytes")
    return text.encode("latin1")


def _cifar_batch(path: Path) -> dict:
    if not path.is_file():
        raise ConvscopeError(f"no CIFAR batch file {path} (nothing is downloaded: point at an existing root)")
    with path.open("rb") as handle:
        try:
            batch = _ArraysOnly(handle, encoding="bytes").load()
        except ConvscopeError:
            raise
        except Exception as error:
            raise ConvscopeError(
                f"cannot read {path}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            ) from None
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}


def _cifar(root: Path, transform, labels, num_classes, train=False, hundred=False):
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder = folder if folder.is_dir() else root
    names = (
        (["train"] if train else ["test"])
        if hundred
        else ([f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"])
    )
    images, targets = [], []
    for name in names:
        batch = _cifar_batch(folder / name)
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        targets += [int(v) for v in batch["fine_labels" if hundred else "labels"]]
    arrays = np.concatenate(images)
    kind = ("cifar100" if hundred else "cifar10") + ("-train" if train else "")
    return ArrayDataset(arrays, targets, [f"{kind}/{i}" for i in range(len(targets))], transform, kind)


IDX_LIMIT = 1 << 30  # bytes of pixels an IDX header may announce (MNIST's train set: 47 MB)


def _idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; raw or ``.gz``): magic ``0 0 0x08 ndim``, ``ndim``
    big-endian uint32 sizes, then the unsigned bytes. Data only; a header that does not match
    the bytes that follow is a one-line error."""
    import gzip
    import math
    import struct
    import zlib

    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            magic = handle.read(4)
            if len(magic) < 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != ndim:
                raise ConvscopeError(f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s)")
            shape = struct.unpack(f">{ndim}I", handle.read(4 * ndim))
            count = math.prod(shape)
            if count > IDX_LIMIT:
                raise ConvscopeError(f"{path} announces {count} bytes of data (over {IDX_LIMIT}); not read")
            data = handle.read(count + 1)
    except (OSError, EOFError, struct.error, zlib.error) as error:
        raise ConvscopeError(
            f"cannot read {path}: {str(error).splitlines()[0] if str(error) else 'truncated'}"
        ) from None
    if len(data) != count:
        raise ConvscopeError(f"{path}: its header announces {count} bytes of data, the file holds {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _idx_file(root: Path, folder: str, name: str) -> Path:
    """``name`` or ``name.gz`` in ``ROOT/FOLDER/raw`` (torchvision's layout), ``ROOT/raw`` or ``ROOT``."""
    places = (root / folder / "raw", root / "raw", root)
    for place in places:
        for candidate in (place / name, place / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise ConvscopeError(
        f"no {name}[.gz] in {places[0]}, {places[1]} or {root} (nothing is downloaded: point at an existing root)"
    )


def _mnist(root: Path, transform, labels, num_classes, train=False, fashion=False):
    """MNIST / Fashion-MNIST as torchvision keeps them (``ROOT/MNIST/raw/t10k-images-idx3-ubyte``,
    ``.gz`` or extracted), read without torchvision's download machinery."""
    folder, prefix = ("FashionMNIST" if fashion else "MNIST"), ("train" if train else "t10k")
    images = _idx(_idx_file(root, folder, f"{prefix}-images-idx3-ubyte"), 3)
    targets = _idx(_idx_file(root, folder, f"{prefix}-labels-idx1-ubyte"), 1)
    if len(targets) != len(images):
        raise ConvscopeError(f"{root}: {len(images)} images but {len(targets)} labels")
    name = ("fashion-mnist" if fashion else "mnist") + ("-train" if train else "")
    return ArrayDataset(images, targets.tolist(), [f"{name}/{i}" for i in range(len(images))], transform, name)


def _svhn(root: Path, transform, labels, num_classes, train=False):
    from scipy.io import loadmat

    path = root / ("train_32x32.mat" if train else "test_32x32.mat")
    if not path.is_file():
        raise ConvscopeError(f"no {path} (nothing is downloaded: point at an existing SVHN root)")
    try:
        mat = loadmat(path, variable_names=("X", "y"))  # MATLAB v5 arrays: data only, nothing is run
    except Exception as error:  # scipy's parser on a damaged file raises anything (IndexError on a short one)
        raise ConvscopeError(
            f"cannot read {path}: {str(error).splitlines()[0] if str(error) else 'not a .mat file'}"
        ) from None
    images, digits = mat.get("X"), mat.get("y")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != 3:
        raise ConvscopeError(f"{path}: expected X as uint8 (32, 32, 3, N), as the SVHN release stores it")
    if not isinstance(digits, np.ndarray) or digits.size != images.shape[3] or digits.dtype.kind not in "iuf":
        raise ConvscopeError(f"{path}: expected y with one digit (1..10) per image")
    arrays = np.ascontiguousarray(images.transpose(3, 0, 1, 2))
    targets = [int(v) % 10 for v in digits.reshape(-1)]  # SVHN stores digit 0 as 10
    name = "svhn" + ("-train" if train else "")
    return ArrayDataset(arrays, targets, [f"{name}/{i}" for i in range(len(targets))], transform, name)


def _imagenet(root: Path, transform, labels, num_classes, train=False):
    folder = root / ("train" if train else "val")
    if not folder.is_dir():
        raise ConvscopeError(f"no {folder} (the ImageNet root holds train/ and val/ with WordNet-ID folders)")
    return open_folder(folder, transform, labels, num_classes or (None if labels else 1000))


TORCHVISION_ROOTS = {
    "cifar10": _cifar,
    "cifar100": lambda root, t, l, n, train=False: _cifar(root, t, l, n, train, hundred=True),
    "mnist": _mnist,
    "fashion-mnist": lambda root, t, l, n, train=False: _mnist(root, t, l, n, train, fashion=True),
    "svhn": _svhn,
    "imagenet": _imagenet,
}
