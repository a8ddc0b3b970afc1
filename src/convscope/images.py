"""Images in and out: every image in convscope is a float tensor (N, 3, H, W) in [0, 1].

:func:`load_image` takes a file path, ``sample:NAME`` (scikit-image's bundled photos,
no network), a PIL image, a numpy array or a tensor. :func:`load_folder` walks a folder
in batches. Images are fitted to ``size`` the way torchvision evaluates ImageNet models
(``preprocessing="center-crop"``, the default everywhere, CLI and Python alike): the shorter
side is resized to ``size / 0.875`` (Resize(256) for 224) with scikit-image's antialiased
resize, then the centre ``size`` x ``size`` is taken; ``preprocessing="squash"`` resizes to
``size`` x ``size`` ignoring the aspect ratio instead. An image already at ``size`` is kept as it is.
"""

from __future__ import annotations

__all__ = [
    "array_to_tensor",
    "check_image_size",
    "CROP_RATIO",
    "DEFAULT_MAX_PIXELS",
    "image_files",
    "IMAGE_SUFFIXES",
    "ImageBatch",
    "ImageTooLarge",
    "load_folder",
    "load_image",
    "load_images",
    "MAX_ASPECT",
    "max_pixels",
    "MAX_PIXELS_ENV",
    "model_image",
    "open_checked",
    "PHOTOS",
    "pil_to_tensor",
    "preprocess",
    "PREPROCESSING",
    "preprocess_geometry",
    "read_image_file",
    "reduce_for",
    "resize",
    "sample_array",
    "SAMPLES",
    "save_image",
    "TEXTURES",
    "to_uint8",
]

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import ConvscopeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")

#: scikit-image's bundled pictures (no download), loadable as ``sample:NAME``.
SAMPLES = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "logo",
    "brick",
    "grass",
    "gravel",
    "camera",
    "coins",
    "clock",
    "moon",
    "page",
    "text",
    "horse",
    "cell",
    "microaneurysms",
    "checkerboard",
)
#: the colour photos of everyday scenes: a small offline 'dataset'.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
#: the bundled textures (grey).
TEXTURES = ("brick", "grass", "gravel")


#: the environment variable that sets :func:`max_pixels` (CLI, folders, API); the web app has its own limit.
MAX_PIXELS_ENV = "CONVSCOPE_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 40_000_000
#: the most elongated image accepted (longer side / shorter side).
MAX_ASPECT = 100


class ImageTooLarge(ConvscopeError):
    """An image file whose header claims more pixels than the limit, or a degenerate shape (40000 x 1)."""


def max_pixels() -> int:
    """The largest image (width x height) convscope decodes: ``$CONVSCOPE_MAX_PIXELS`` or 40 M."""
    import os

    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ConvscopeError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, got {text!r}")
    return int(text)


def check_image_size(width: int, height: int, where: str = "image", limit: int | None = None) -> None:
    """Refuse, before decoding, an image over ``limit`` pixels (default :func:`max_pixels`) or
    more elongated than :data:`MAX_ASPECT` : 1 (a decompression bomb is small on disk and huge
    once decoded; the header's size is read first, the pixels only after this check)."""
    hint = f" (set {MAX_PIXELS_ENV} to raise it)" if limit is None else ""
    limit = max_pixels() if limit is None else limit
    if width < 1 or height < 1:
        raise ImageTooLarge(f"{where} is {width}x{height} pixels: empty")
    if width * height > limit:
        raise ImageTooLarge(f"{where} is {width}x{height} = {width * height:,} pixels; the limit is {limit:,}{hint}")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageTooLarge(f"{where} is {width}x{height} pixels: more elongated than {MAX_ASPECT}:1")


def open_checked(source, where: str, limit: int | None = None) -> Image.Image:
    """``Image.open`` (header only) and :func:`check_image_size`; the caller decodes with ``.load()``."""
    import warnings

    try:
        with warnings.catch_warnings():  # PIL's warning at its own 89 M limit: the check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError:  # PIL's own guard, at twice its MAX_IMAGE_PIXELS
        raise ImageTooLarge(
            f"{where} claims over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels; the limit is "
            f"{max_pixels() if limit is None else limit:,}"
        ) from None
    try:
        check_image_size(image.width, image.height, where, limit)
    except ImageTooLarge:
        image.close()
        raise
    return image


def reduce_for(image: Image.Image, target: tuple[int, int] | None) -> Image.Image:
    """Shrink a large picture cheaply before the exact resize: JPEGs decode at a reduced scale
    (``draft``) and others are box-reduced by an integer factor, both stopping at twice the
    target so the antialiased resize still does the last step (a 6000 px photo resized to 224
    takes a fraction of a second and memory instead of seconds and a gigabyte of floats)."""
    if target is None:
        return image
    height, width = target
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        image.draft(image.mode, (2 * width, 2 * height))
    factor = int(min(image.width / width, image.height / height) // 2)
    if factor >= 2 and image.mode in ("RGB", "RGBA", "L", "LA"):
        image.load()
        return image.reduce(factor)
    return image


def sample_array(name: str) -> np.ndarray:
    """A scikit-image bundled picture as a numpy array, by name."""
    from skimage import data

    if name not in SAMPLES:
        close = difflib.get_close_matches(name, SAMPLES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; samples: {', '.join(SAMPLES)}"
        raise ConvscopeError(f"unknown sample {name!r}{hint}")
    return getattr(data, name)()


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxW, HxWxC (C = 1, 3, 4) or CxHxW array of any integer, bool or float type -> (3, H, W) in [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ConvscopeError(f"cannot read an image from an array of shape {tuple(array.shape)}")
    if array.dtype == bool:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        if array.dtype.kind == "u" and array.shape[-1] in (1, 3):  # in [0, 1] by construction
            return _channels_first(array.astype(np.float32) / float(np.iinfo(array.dtype).max))
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    else:
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ConvscopeError("image array contains NaN or infinite values")
    if array.shape[-1] in (2, 4):  # grey+alpha or RGBA: composite over white
        alpha = array[..., -1:]
        array = array[..., :-1] * alpha + (1.0 - alpha)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.min() < -1e-6 or array.max() > 1 + 1e-6:
        raise ConvscopeError(
            f"float image values must lie in [0, 1], got [{array.min():.3g}, {array.max():.3g}]"
            " (scale the image to [0, 1] first)"
        )
    return _channels_first(array.clip(0, 1))


def _channels_first(array: np.ndarray) -> torch.Tensor:
    """(H, W, 1 | 3) float32 -> a (3, H, W) tensor owning its memory; the copy is done by numpy
    (a torch copy of one image would start the intra-op thread pool, costly for small images)."""
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image of any mode (palette, grey, 16-bit, RGBA, ...) -> (3, H, W) in [0, 1]."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return array_to_tensor(np.asarray(image, dtype=np.uint16))
    if image.mode == "I":
        array = np.asarray(image, dtype=np.int64)
        return array_to_tensor((array.clip(0, 65535)).astype(np.uint16))
    if image.mode == "F":  # float grey: values must already be in [0, 1] (not clipped silently)
        return array_to_tensor(np.asarray(image, dtype=np.float32))
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
    return array_to_tensor(np.asarray(image))


#: 8-bit RGB / grey PNGs and JPEGs are decoded by torchvision.io (libpng, libjpeg-turbo): the same
#: pixels as Pillow (checked bit for bit on the labelled samples and on JPEGs of every chroma
#: subsampling, ``tests/test_data_decode.py``) for less work per image; Pillow reads the rest.
NATIVE_FORMATS = ("PNG", "JPEG")


def _decode_native(path: Path) -> torch.Tensor:
    """A PNG/JPEG file -> (3, H, W) in [0, 1] through ``torchvision.io.decode_image``; the uint8
    -> float conversion in numpy (one thread: no intra-op pool for one small image)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        pixels = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError as error:  # a damaged stream behind a header that Pillow accepted
        reason = str(error).splitlines()[0].rsplit(", ", 1)[-1] if str(error) else "cannot decode"
        raise ConvscopeError(f"cannot read image {path}: truncated or corrupt ({reason})") from None
    array = np.ascontiguousarray(pixels.numpy(), dtype=np.float32)  # PNGs come back as an HWC view
    array /= 255.0
    return torch.from_numpy(array)


def read_image_file(path: str | Path, target: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image file -> (3, H, W) in [0, 1], with a one-line error for bad files; the
    header's size is checked first (:func:`check_image_size`). ``target`` (H, W): the size it
    will be resized to, so a large picture is first reduced cheaply (:func:`reduce_for`)."""
    path = Path(path)
    if path.is_dir():
        raise ConvscopeError(f"{path} is a folder; use load_folder() (CLI: pass the folder to a dataset command)")
    if not path.is_file():
        raise ConvscopeError(f"no such image file: {path}")
    try:
        with open_checked(path, str(path)) as image:
            size = image.size
            image = reduce_for(image, target)
            if image.size == size and image.format in NATIVE_FORMATS and image.mode in ("RGB", "L"):
                return _decode_native(path)
            image.load()
            return pil_to_tensor(image)
    except ConvscopeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if path.suffix.lower() in (".tif", ".tiff"):  # 16-bit colour TIFFs that PIL cannot decode
            try:
                import tifffile

                array = _read_tiff(path, tifffile)
            except ImageTooLarge:
                raise
            except Exception as tiff_error:  # neither PIL nor tifffile can decode it: say both reasons
                raise ConvscopeError(
                    f"cannot read image {path}: not a readable TIFF ({str(error).splitlines()[0]}; "
                    f"tifffile: {str(tiff_error).splitlines()[0] if str(tiff_error) else type(tiff_error).__name__})"
                ) from None
            try:
                return array_to_tensor(array)
            except ConvscopeError as bad:  # decoded, but the values are not an image in [0, 1]
                raise ConvscopeError(f"cannot read image {path}: {bad}") from None
        kind = (
            "truncated or corrupt"
            if isinstance(error, OSError) and "truncated" in str(error)
            else "not a readable image"
        )
        raise ConvscopeError(f"cannot read image {path}: {kind} ({str(error).splitlines()[0]})") from None


def _read_tiff(path: Path, tifffile) -> np.ndarray:
    with tifffile.TiffFile(path) as tiff:
        shape = tiff.series[0].shape
        channels_last = len(shape) >= 3 and shape[-1] <= 4
        height, width = (shape[-3], shape[-2]) if channels_last else (shape[-2], shape[-1])
        check_image_size(int(width), int(height), str(path))
        return tiff.asarray()


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) to ``size`` ignoring the aspect ratio, with antialiasing
    (scikit-image's ``resize``: Gaussian prefilter when shrinking, then bilinear)."""
    from skimage.transform import resize as sk_resize

    height, width = (size, size) if isinstance(size, int) else size
    if tuple(x.shape[-2:]) != (height, width):
        arrays = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        resized = [sk_resize(a, (height, width), order=1, anti_aliasing=True, preserve_range=True) for a in arrays]
        x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
    return x.clamp(0, 1).contiguous()


#: torchvision's evaluation convention: Resize(S * 256 / 224) of the shorter side, then CenterCrop(S).
CROP_RATIO = 224 / 256
#: how :func:`preprocess` fits an image to a size.
PREPROCESSING = ("center-crop", "squash")


def preprocess(x: torch.Tensor, size: int | tuple[int, int], mode: str = "center-crop") -> torch.Tensor:
    """Fit (N, C, H, W) to ``size`` the way a model expects: ``center-crop`` resizes the shorter
    side to ``max(size) / 0.875`` and takes the centre (torchvision's Resize(256) + CenterCrop(224)
    at any size); ``squash`` resizes to ``size`` ignoring the aspect ratio. An image already at
    ``size`` is returned as it is (a 32 x 32 CIFAR picture for a 32 x 32 network is not zoomed)."""
    inner, (top, left) = preprocess_geometry(tuple(x.shape[-2:]), size, mode)
    height, width = (size, size) if isinstance(size, int) else size
    x = resize(x, inner)
    if inner == (height, width):
        return x
    return x[..., top : top + height, left : left + width].contiguous()


def preprocess_geometry(
    shape: tuple[int, int], size: int | tuple[int, int], mode: str = "center-crop"
) -> tuple[tuple[int, int], tuple[int, int]]:
    """What :func:`preprocess` does to an image of ``shape`` (H, W): the size it is resized to and
    the (top, left) corner of the ``size`` window then taken, so that a label map (a segmentation
    mask) can follow the same geometry with its own resampling."""
    if mode not in PREPROCESSING:
        raise ConvscopeError(f"unknown preprocessing {mode!r}; choose {' | '.join(PREPROCESSING)}")
    height, width = (size, size) if isinstance(size, int) else size
    if mode == "squash" or tuple(shape) == (height, width):
        return (height, width), (0, 0)
    scale = max(height, width) / CROP_RATIO / min(shape)
    inner = (max(height, round(shape[0] * scale)), max(width, round(shape[1] * scale)))
    return inner, ((inner[0] - height) // 2, (inner[1] - width) // 2)


def load_image(spec, size: int | tuple[int, int] | None = 224, preprocessing: str = "center-crop") -> torch.Tensor:
    """Load one image as a float tensor (1, 3, H, W) in [0, 1].

    Args:
        spec: file path (PNG, JPEG, WebP, TIFF, BMP, GIF), ``sample:NAME`` (see
            :data:`SAMPLES`), PIL image, numpy array or tensor.
        size: side (or (H, W)) to fit to; ``None`` keeps the original size.
        preprocessing: ``center-crop`` (torchvision's Resize(256) + CenterCrop(224) ratio;
            the CLI's default too) or ``squash`` (see :func:`preprocess`).
            :func:`model_image` uses the model's own.

    >>> load_image("sample:chelsea").shape  # 451 x 300: shorter side to 256, centre 224 x 224
    torch.Size([1, 3, 224, 224])
    """
    if isinstance(spec, torch.Tensor):
        tensor = spec.detach().float().cpu()
        tensor = tensor[0] if tensor.ndim == 4 and tensor.shape[0] == 1 else tensor
        if tensor.ndim != 3:
            raise ConvscopeError(f"expected an image tensor (3, H, W) or (1, 3, H, W), got {tuple(spec.shape)}")
        tensor = array_to_tensor(tensor.numpy())
    elif isinstance(spec, Image.Image):
        tensor = pil_to_tensor(spec)
    elif isinstance(spec, np.ndarray):
        tensor = array_to_tensor(spec)
    elif isinstance(spec, (str, Path)):
        text = str(spec)
        if text.startswith(("http://", "https://")):
            raise ConvscopeError(f"{text} is a URL; convscope works offline: download it first and pass the file")
        if text.startswith("sample:"):
            tensor = array_to_tensor(sample_array(text.split(":", 1)[1]))
        else:
            target = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
            tensor = read_image_file(text, target)
    else:
        raise ConvscopeError(f"cannot load an image from {type(spec).__name__}")
    tensor = tensor[None]
    if size is None:
        if preprocessing not in PREPROCESSING:
            raise ConvscopeError(f"unknown preprocessing {preprocessing!r}; choose {' | '.join(PREPROCESSING)}")
        return tensor
    return preprocess(tensor, size, preprocessing)


def model_image(spec, model, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Load an image the way ``model`` takes it: at its ``input_size`` (or ``size``) with its
    preprocessing (``center-crop`` by default), on the model's device."""
    parameter = next(model.parameters(), None)
    image = load_image(
        spec, size or getattr(model, "input_size", 224), preprocessing=getattr(model, "preprocess", "center-crop")
    )
    return image.to(parameter.device) if parameter is not None else image


def image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConvscopeError(f"no such folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConvscopeError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


@dataclass
class ImageBatch:
    """A batch from a folder: images (N, 3, H, W) and the files they came from."""

    images: torch.Tensor
    paths: list[Path]


def load_folder(
    folder: str | Path,
    size: int | tuple[int, int] = 224,
    batch_size: int = 32,
    preprocessing: str = "center-crop",
    skip_bad: bool = True,
) -> Iterator[ImageBatch]:
    """Yield batches of images from a folder, each fitted to ``size`` by ``preprocessing`` (see
    :func:`preprocess`); unreadable files are skipped with a warning (or raise with ``skip_bad=False``)."""
    import warnings

    images, paths = [], []
    for path in image_files(folder):
        try:
            images.append(load_image(path, size, preprocessing))
        except ConvscopeError as error:
            if not skip_bad:
                raise
            warnings.warn(str(error), stacklevel=2)
            continue
        paths.append(path)
        if len(images) == batch_size:
            yield ImageBatch(torch.cat(images), paths)
            images, paths = [], []
    if images:
        yield ImageBatch(torch.cat(images), paths)


def load_images(specs: Sequence, size: int | tuple[int, int] = 224, preprocessing: str = "center-crop") -> torch.Tensor:
    """Several image specs -> one batch (N, 3, size, size), fitted by ``preprocessing``."""
    return torch.cat([load_image(spec, size, preprocessing) for spec in specs])


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) in [0, 1] -> HxWx3 uint8."""
    image = image.detach().float().cpu()
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ConvscopeError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_image(image: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Save (3, H, W), (1, 3, H, W) or a batch (as a grid) to a PNG/JPEG file (grey: 1 channel).
    Checked first: a NaN, uint8 or empty tensor is a ConvscopeError, not a garbage picture."""
    from torchvision.utils import make_grid

    from .checks import check_images

    image = check_images(image[None] if image.ndim == 3 else image, "image", channels=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 4 and image.shape[0] > 1:
        image = make_grid(image.detach().float().cpu(), nrow=nrow, padding=2, pad_value=1.0)
    Image.fromarray(to_uint8(image)).save(path)
    return path
