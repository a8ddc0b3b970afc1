"""Segmentation data: a VOC-style folder of image/mask pairs, and generated scenes with exact masks.

Everything is held in memory as :class:`SegmentationData`: images (N, 3, H, W) in [0, 1]
and masks (N, H, W) of class ids, 255 = "ignore" (the PASCAL VOC convention for borders).

* :func:`load_voc_folder` reads the VOC layout: ``JPEGImages/NAME.jpg`` (any image type),
  ``SegmentationClass/NAME.png`` (palette PNG whose pixel values are class ids, or RGB in
  the VOC colour map), optional ``ImageSets/Segmentation/SPLIT.txt`` and ``classes.txt``
  (one class name per line; default: the 21 VOC names); also ``images/`` + ``masks/``
  (:func:`list_pairs`). For folders larger than memory, stream them with
  :func:`convscope.segmentation.open_mask_folder`.
* :func:`generate_scenes` composites pieces of scikit-image's bundled photos (the cat of
  ``chelsea``, the ``coffee`` cup, the ``astronaut``) inside random ellipses, rectangles
  and triangles over tinted bundled textures (brick, grass, gravel), so every pixel's class
  is known exactly. The class is the *material* (which photo), not the shape. Offline,
  deterministic under ``seed``.
"""

from __future__ import annotations

__all__ = [
    "generate_scenes",
    "IGNORE_INDEX",
    "list_pairs",
    "load_voc_folder",
    "SCENE_CLASSES",
    "SegmentationData",
    "VOC_CLASSES",
    "voc_palette",
    "write_voc_folder",
]

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConvscopeError
from ..images import IMAGE_SUFFIXES, read_image_file, resize, sample_array, save_image

IGNORE_INDEX = 255
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
#: classes of the generated scenes: background texture, then one class per source photo.
SCENE_CLASSES = ("background", "cat", "coffee", "astronaut")
_SCENE_SOURCES = ("chelsea", "coffee", "astronaut")
_SCENE_TEXTURES = ("brick", "grass", "gravel")


@dataclass
class SegmentationData:
    """Images (N, 3, H, W) in [0, 1], masks (N, H, W) int64 class ids (255 = ignore), class names."""

    images: torch.Tensor
    masks: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index) -> SegmentationData:
        return SegmentationData(self.images[index], self.masks[index], self.classes)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[SegmentationData, SegmentationData]:
        """A random (train, val) split."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        cut = len(self) - max(1, round(val_fraction * len(self)))
        return self[order[:cut]], self[order[cut:]]


def voc_palette(count: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (class id -> RGB), the usual bit-interleaving formula."""
    colours = []
    for index in range(count):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((red, green, blue))
    return colours


def _read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        if picture.mode in ("P", "L", "I", "I;16"):
            return np.asarray(picture).astype(np.int64)
        rgb = np.asarray(picture.convert("RGB")).astype(np.int64)
    codes = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
    lookup = {r << 16 | g << 8 | b: index for index, (r, g, b) in enumerate(voc_palette())}
    mask = np.full(codes.shape, IGNORE_INDEX, dtype=np.int64)
    for code in np.unique(codes):
        if int(code) not in lookup:
            raise ConvscopeError(
                f"{path}: colour #{int(code):06x} is not in the VOC colour map; save masks as palette PNGs of class ids"
            )
        mask[codes == code] = lookup[int(code)]
    return mask


def _voc_root(root: Path) -> Path:
    """``root`` itself, or the one ``root/VOCdevkit/VOC<year>`` inside it (torchvision's
    ``VOCSegmentation(root)`` layout, as the release tar unpacks)."""
    if (root / "JPEGImages").is_dir() or not (root / "VOCdevkit").is_dir():
        return root
    years = sorted(p for p in (root / "VOCdevkit").iterdir() if p.is_dir() and (p / "JPEGImages").is_dir())
    if len(years) > 1:
        raise ConvscopeError(f"{root}/VOCdevkit holds {', '.join(p.name for p in years)}: give one of them")
    return years[0] if years else root


def list_pairs(
    root: str | Path, split: str | None = None
) -> tuple[Path, list[tuple[str, Path, Path]], tuple[str, ...]]:
    """The pairs of a segmentation folder: (its root, [(name, image, mask), ...], class names).

    Layouts: VOC (``JPEGImages/`` + ``SegmentationClass/``, or a root holding ``VOCdevkit/VOC<year>``;
    ``split`` reads ``ImageSets/Segmentation/SPLIT.txt``) or ``images/`` + ``masks/``; masks are
    ``NAME.png``; class names from ``classes.txt`` (default: the 21 VOC names).
    """
    root = _voc_root(Path(root))
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        image_dir, mask_dir = root / "JPEGImages", root / "SegmentationClass"
    elif (root / "images").is_dir() and (root / "masks").is_dir():
        image_dir, mask_dir = root / "images", root / "masks"
    else:
        raise ConvscopeError(
            f"{root} is not a segmentation folder: it needs JPEGImages/ + SegmentationClass/ or images/ + masks/"
        )
    images_by_name = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    if split is not None:
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise ConvscopeError(f"no split {split!r}: {listing} does not exist")
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    else:
        names = sorted(p.stem for p in mask_dir.glob("*.png"))
    missing = [n for n in names if n not in images_by_name or not (mask_dir / f"{n}.png").is_file()]
    if missing or not names:
        raise ConvscopeError(f"{root}: no image/mask pair for {missing[:3]}" if missing else f"{root}: no masks found")
    classes_file = root / "classes.txt"
    classes = (
        tuple(line.strip() for line in classes_file.read_text().splitlines() if line.strip())
        if classes_file.is_file()
        else VOC_CLASSES
    )
    return root, [(n, images_by_name[n], mask_dir / f"{n}.png") for n in names], classes


def load_voc_folder(root: str | Path, split: str | None = None, size: int | None = None) -> SegmentationData:
    """Read a segmentation folder (layouts of :func:`list_pairs`) into memory, resized to
    ``size`` x ``size`` if given (for large folders stream them: :func:`open_mask_folder`).

    Images are resized with antialiasing, masks with nearest neighbour (class ids stay ids).
    """
    root, pairs, classes = list_pairs(root, split)
    images, masks = [], []
    for name, image_path, mask_path in pairs:
        image = read_image_file(image_path)[None]
        mask = torch.from_numpy(_read_mask(mask_path))[None, None].float()
        if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
            raise ConvscopeError(
                f"{name}: mask {tuple(mask.shape[-2:])} and image {tuple(image.shape[-2:])} differ in size"
            )
        if size is not None:
            image = resize(image, size)
            mask = F.interpolate(mask, size=(size, size), mode="nearest")
        images.append(image)
        masks.append(mask[:, 0].long())
    if size is None and len({tuple(i.shape) for i in images}) > 1:
        raise ConvscopeError(f"{root}: images differ in size; pass size= (CLI: --size) to resize them")
    masks_tensor = torch.cat(masks)
    valid = masks_tensor[masks_tensor != IGNORE_INDEX]
    if valid.numel() and int(valid.max()) >= len(classes):
        raise ConvscopeError(f"{root}: masks hold class {int(valid.max())} but only {len(classes)} classes are named")
    return SegmentationData(torch.cat(images), masks_tensor, classes)


def write_voc_folder(data: SegmentationData, root: str | Path, split: str | None = None) -> Path:
    """Write images (PNG) and palette masks in the VOC layout (with ``classes.txt``); returns ``root``."""
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    palette = [channel for colour in voc_palette() for channel in colour]
    names = []
    for index in range(len(data)):
        name = f"{split or 'scene'}_{index:05d}"
        save_image(data.images[index : index + 1], root / "JPEGImages" / f"{name}.png")
        mask = Image.fromarray(data.masks[index].numpy().astype(np.uint8), mode="P")
        mask.putpalette(palette)
        mask.save(root / "SegmentationClass" / f"{name}.png")
        names.append(name)
    (root / "classes.txt").write_text("\n".join(data.classes) + "\n")
    if split is not None:
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


@lru_cache(maxsize=1)
def _scene_materials() -> tuple[torch.Tensor, ...]:
    """The bundled photos and textures as (3, H, W) tensors at about 160 px (cached)."""
    pictures = []
    for name in _SCENE_SOURCES + _SCENE_TEXTURES:
        array = sample_array(name)
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float32) / 255.0)
        tensor = tensor[None].repeat(3, 1, 1) if tensor.ndim == 2 else tensor.permute(2, 0, 1)[:3]
        scale = 160 / min(tensor.shape[-2:])
        pictures.append(
            F.interpolate(tensor[None], scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)[
                0
            ].clamp(0, 1)
        )
    return tuple(pictures)


def _random_crop(
    picture: torch.Tensor, size: int, generator: torch.Generator, smallest: float, largest: float
) -> torch.Tensor:
    side = min(picture.shape[-2:])
    crop = int(side * (smallest + (largest - smallest) * torch.rand(1, generator=generator).item()))
    top = int(torch.randint(0, picture.shape[-2] - crop + 1, (1,), generator=generator))
    left = int(torch.randint(0, picture.shape[-1] - crop + 1, (1,), generator=generator))
    piece = picture[None, :, top : top + crop, left : left + crop]
    return F.interpolate(piece, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _shape_mask(size: int, generator: torch.Generator) -> np.ndarray:
    from skimage import draw

    def uniform(low, high):
        return low + (high - low) * torch.rand(1, generator=generator).item()

    kind = int(torch.randint(0, 3, (1,), generator=generator))
    center_r, center_c = uniform(0.15, 0.85) * size, uniform(0.15, 0.85) * size
    radius_r, radius_c = uniform(0.12, 0.32) * size, uniform(0.12, 0.32) * size
    mask = np.zeros((size, size), dtype=bool)
    if kind == 0:
        rows, cols = draw.ellipse(center_r, center_c, radius_r, radius_c, shape=mask.shape, rotation=uniform(0, np.pi))
    elif kind == 1:
        rows, cols = draw.rectangle(
            (center_r - radius_r, center_c - radius_c), (center_r + radius_r, center_c + radius_c), shape=mask.shape
        )
        rows, cols = rows.astype(int), cols.astype(int)
    else:
        angles = uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        rows, cols = draw.polygon(
            center_r + 1.3 * radius_r * np.sin(angles), center_c + 1.3 * radius_c * np.cos(angles), shape=mask.shape
        )
    mask[rows, cols] = True
    return mask


def generate_scenes(count: int, size: int = 96, seed: int = 0, max_shapes: int = 3) -> SegmentationData:
    """Generated scenes with exact masks (classes :data:`SCENE_CLASSES`); see the module doc.

    Each scene: a tinted crop of a bundled texture, then 1..``max_shapes`` shapes (ellipse,
    rectangle, triangle), each filled with a crop of one source photo; later shapes cover
    earlier ones and the mask records the visible class of every pixel.

    >>> data = generate_scenes(8, size=64)
    >>> data.images.shape, data.masks.shape, data.classes[1]
    (torch.Size([8, 3, 64, 64]), torch.Size([8, 64, 64]), 'cat')
    """
    if count < 1 or size < 16 or max_shapes < 1:
        raise ConvscopeError("generate_scenes needs count >= 1, size >= 16 and max_shapes >= 1")
    generator = torch.Generator().manual_seed(seed)
    materials = _scene_materials()
    sources, textures = materials[: len(_SCENE_SOURCES)], materials[len(_SCENE_SOURCES) :]
    images = torch.empty(count, 3, size, size)
    masks = torch.zeros(count, size, size, dtype=torch.long)
    for index in range(count):
        texture = textures[int(torch.randint(0, len(textures), (1,), generator=generator))]
        tint = 0.4 + 0.6 * torch.rand(3, 1, 1, generator=generator)
        image = _random_crop(texture, size, generator, 0.3, 0.9) * tint
        for _ in range(int(torch.randint(1, max_shapes + 1, (1,), generator=generator))):
            label = int(torch.randint(1, len(SCENE_CLASSES), (1,), generator=generator))
            shape = torch.from_numpy(_shape_mask(size, generator))
            fill = _random_crop(sources[label - 1], size, generator, 0.25, 0.7)
            image = torch.where(shape, fill, image)
            masks[index][shape] = label
        images[index] = image.clamp(0, 1)
    return SegmentationData(images, masks, SCENE_CLASSES)
