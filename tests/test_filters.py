"""convscope.filters against the references: torchvision's and kornia's Gaussian blur, Pillow's JPEG.

Measured on 4 photos at 224 px (benchmarks/filters.py, 2026-12-02): the blur is within 1.1e-6 of
torchvision and kornia for σ = 1, 2, 3 (float32 rounding); the JPEG round trip equals Pillow's
bit for bit at quality 75, 30 and 10 (both are libjpeg), where kornia's differentiable JPEG is
1.2-1.8/255 off on average (max 28-38/255): see docs/architecture.md, "Shared low-level pieces".
"""

import io

import kornia
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

import convscope
from convscope.filters import gaussian_blur, jpeg


@pytest.fixture(scope="module")
def photos():
    x = torch.cat([convscope.load_image(f"sample:{name}", 96) for name in ("chelsea", "coffee")])
    return (x * 255).round() / 255


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_blur_matches_torchvision_and_kornia(photos, sigma):
    radius = int(3 * sigma + 0.5)
    size = 2 * radius + 1
    ours = gaussian_blur(photos, sigma, radius=radius)
    assert (ours - TF.gaussian_blur(photos, [size, size], [sigma, sigma])).abs().max() < 1e-5
    kornia_blur = kornia.filters.gaussian_blur2d(photos, (size, size), (sigma, sigma), border_type="reflect")
    assert (ours - kornia_blur).abs().max() < 1e-5


def test_blur_with_one_sigma_per_image(photos):
    both = gaussian_blur(photos, torch.tensor([1.0, 2.0]), radius=6)
    for index, sigma in enumerate((1.0, 2.0)):
        assert (both[index] - gaussian_blur(photos[index : index + 1], sigma, radius=6)[0]).abs().max() < 1e-6


@pytest.mark.parametrize("quality", [75, 10])
def test_jpeg_equals_pillow(photos, quality):
    ours = jpeg(photos, quality)
    for image, decoded in zip(photos, ours):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "JPEG", quality=quality)
        reference = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        assert np.array_equal((decoded.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), reference)
