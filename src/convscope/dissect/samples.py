"""An offline image folder for mining: the bundled photos and textures with crops and flips.

No dataset ships with convscope and nothing is downloaded, so tests, the tour and users
without a folder of their own get one from scikit-image's bundled pictures
(:data:`convscope.images.PHOTOS` + :data:`convscope.images.TEXTURES`): each picture whole,
mirrored, and random square crops (25-70 % of the shorter side, each possibly mirrored),
resized (antialiased bilinear) so the longer side is at most ``max_side`` pixels.
"""

from __future__ import annotations

__all__ = ["sample_folder"]

from pathlib import Path

import torch
import torch.nn.functional as F

from ..images import PHOTOS, TEXTURES, load_image, save_image


def sample_folder(path: str | Path, n: int = 60, max_side: int = 256, seed: int = 0) -> Path:
    """Write ``n`` PNG images (bundled pictures, their flips and crops) into ``path``; return it.

    Deterministic for a given ``seed``; an existing folder is overwritten file by file.

    >>> folder = sample_folder("/tmp/photos", n=40)
    >>> top_k_examples(model, folder, "blocks.5")
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    pictures = {name: _shrink(load_image(f"sample:{name}", size=None), 2 * max_side) for name in PHOTOS + TEXTURES}
    written = 0
    variant = 0
    while written < n:
        for name, picture in pictures.items():
            if written >= n:
                break
            image = picture
            if variant == 1:
                image = image.flip(-1)
            elif variant > 1:
                height, width = image.shape[-2:]
                side = int(min(height, width) * (0.25 + 0.45 * torch.rand(1, generator=generator).item()))
                top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
                image = image[..., top : top + side, left : left + side]
                if torch.rand(1, generator=generator).item() < 0.5:
                    image = image.flip(-1)
            save_image(_shrink(image, max_side), path / f"{name}_{variant:03d}.png")
            written += 1
        variant += 1
    return path


def _shrink(image: torch.Tensor, max_side: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return image
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
