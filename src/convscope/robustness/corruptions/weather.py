"""Weather corruptions: snow, frost, fog and spatter."""

from __future__ import annotations

__all__ = ["fog", "frost", "snow", "spatter"]

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConvscopeError
from ._filters import _clipped_zoom, _conv_same, _gaussian, _gray, _motion_blur, _normal, _uniform
from .registry import CORRUPTIONS


@CORRUPTIONS.register(category="weather")
def snow(x, severity, generator):
    """Zoomed, thresholded, motion-blurred noise flakes over a brightened image."""
    mean, std, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ][severity - 1]
    n, _, h, w = x.shape
    layer = _clipped_zoom(_normal((n, 1, h, w), mean, std, generator, x.device), zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    angle = _uniform((n,), -135.0, -45.0, generator, x.device)
    layer = torch.round(_motion_blur(layer, radius, sigma, angle) * 255) / 255
    x = keep * x + (1 - keep) * torch.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + layer + layer.flip(2, 3)


def _frost_folder() -> Path:
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise ConvscopeError(
            "frost needs the frost photographs shipped by the 'imagecorruptions' package: pip install imagecorruptions"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "frost"


@functools.cache
def _frost_photo(index: int) -> torch.Tensor:
    from PIL import Image

    name = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"][index]
    with Image.open(_frost_folder() / name) as photo:
        array = np.asarray(photo.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@functools.lru_cache(maxsize=32)
def _frost_rescaled(index: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Frost photo ``index`` scaled (bicubic, like ``cv2.INTER_CUBIC``) to cover H x W, times 1.1."""
    photo = _frost_photo(index)
    ph, pw = photo.shape[-2:]
    scale = max(1.0, height / ph, width / pw) * 1.1
    size = (int(math.ceil(ph * scale)), int(math.ceil(pw * scale)))
    return F.interpolate(photo[None].to(device), size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1)


@CORRUPTIONS.register(category="weather")
def frost(x, severity, generator):
    """Blend with a random crop of one of the first five frost photographs of the reference."""
    keep, amount = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
    n, _, h, w = x.shape
    layers = []
    for choice in torch.randint(5, (n,), generator=generator, device=x.device).tolist():
        photo = _frost_rescaled(choice, h, w, x.device)
        top = int(torch.randint(photo.shape[1] - h, (1,), generator=generator, device=x.device))
        left = int(torch.randint(photo.shape[2] - w, (1,), generator=generator, device=x.device))
        layers.append(photo[:, top : top + h, left : left + w])
    return keep * x + amount * torch.stack(layers).to(x)


def _plasma_fractal(count: int, size: int, decay: float, generator, device) -> torch.Tensor:
    """Diamond-square height maps in [0, 1], (count, size, size); ``size`` a power of two."""
    heights = torch.zeros(count, size, size, device=device, dtype=torch.float64)
    step, wibble = size, 100.0

    def wibbled_mean(total):
        noise = _uniform(total.shape, -wibble, wibble, generator, device).double()
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = heights[:, 0:size:step, 0:size:step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        heights[:, half:size:step, half:size:step] = wibbled_mean(squares)
        centres = heights[:, half:size:step, half:size:step]
        corners = heights[:, 0:size:step, 0:size:step]
        total = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        heights[:, 0:size:step, half:size:step] = wibbled_mean(total)
        total = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        heights[:, half:size:step, 0:size:step] = wibbled_mean(total)
        step //= 2
        wibble /= decay
    low = heights.amin(dim=(1, 2), keepdim=True)
    heights = heights - low
    return heights / heights.amax(dim=(1, 2), keepdim=True)


@CORRUPTIONS.register(category="weather")
def fog(x, severity, generator):
    """Add a plasma-fractal haze (strength, decay) and rescale by the image's maximum."""
    strength, decay = [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)][severity - 1]
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    haze = _plasma_fractal(n, size, decay, generator, x.device)[:, None, :h, :w].to(x)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * haze) * peak / (peak + strength)


# ----------------------------------------------------------------------------- digital


def _water(liquid: torch.Tensor) -> torch.Tensor:
    """Torch rebuild of the reference's water-spatter mask (see the module notes)."""
    mask = (liquid > 0).to(liquid)
    edges = (F.max_pool2d(mask, 3, 1, 1) - (-F.max_pool2d(-mask, 3, 1, 1))).clamp(0, 1)
    distance = torch.zeros_like(liquid)
    reached = edges
    for _ in range(20):
        distance += 1 - reached
        reached = F.max_pool2d(reached, 3, 1, 1)
    distance = F.avg_pool2d(F.pad(distance, (1, 1, 1, 1), mode="reflect"), 3, 1).round()
    levels = distance.flatten(1).long()
    counts = torch.zeros(levels.shape[0], 256, device=liquid.device).scatter_add_(
        1, levels, torch.ones_like(levels, dtype=torch.float32)
    )
    cdf = counts.cumsum(1)
    lowest = cdf.gather(1, (counts > 0).float().argmax(1, keepdim=True))
    table = ((cdf - lowest) / (cdf[:, -1:] - lowest).clamp_min(1) * 255).round().clamp(0, 255)
    equalized = table.gather(1, levels).view_as(distance)
    emboss = torch.tensor([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]])
    embossed = _conv_same(equalized, emboss).clamp(0, 255).floor()
    return F.avg_pool2d(F.pad(embossed, (1, 1, 1, 1), mode="reflect"), 3, 1)


@CORRUPTIONS.register(category="weather")
def spatter(x, severity, generator):
    """Water drops (severities 1-3) or mud splashes (4-5) from thresholded smoothed noise."""
    mean, std, sigma, threshold, intensity, mud = [
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ][severity - 1]
    n, _, h, w = x.shape
    liquid = _gaussian(_normal((n, 1, h, w), mean, std, generator, x.device), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if not mud:
        layer = liquid * _water(torch.floor(liquid * 255))
        layer = layer / layer.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) * intensity
        color = torch.tensor([175, 238, 238], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) / 255
        return x + (layer * color).clamp(0, 1)
    splash = _gaussian((liquid > threshold).to(x), intensity)
    splash = torch.where(splash < 0.8, torch.zeros_like(splash), splash)
    color = torch.tensor([63, 42, 20], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) / 255
    return x * (1 - splash) + color * splash
