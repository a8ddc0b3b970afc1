"""The ImageNet-C common corruptions as batched torch operations (Hendrycks & Dietterich 2019).

``corrupt(x, "fog", 3)`` applies one of the 15 benchmark corruptions (noise: gaussian, shot,
impulse; blur: defocus, glass, motion, zoom; weather: snow, frost, fog; digital: brightness,
contrast, elastic, pixelate, JPEG) or one of the 4 extra ones (speckle noise, gaussian blur,
spatter, saturate) at severity 1..5 to a batch ``x`` of shape (N, 3, H, W) in [0, 1], on
``x.device``, and returns float images in [0, 1] of the same shape.

Convention: the parameters and the algorithms are those of the reference package
``imagecorruptions`` (Michaelis et al. 2019, the maintained port of Hendrycks' code), which
the tests compare against per corruption and severity. Deviations from it:

* Output is float in [0, 1] (the reference truncates to uint8 with ``np.uint8``; the
  intermediate uint8 roundings of PIL/OpenCV steps are not reproduced either).
* Randomness comes from a ``torch.Generator`` (``seed``), not NumPy's global generator, so
  random corruptions match the reference in distribution, not pixel by pixel.
* Each image of a batch draws its own random parameters (motion angle, frost crop, ...).
* Glass blur: the reference swaps pixels one at a time in a Python loop (its slowest
  corruption); here every interior pixel takes the value at a random offset in
  ``[-delta, delta)`` in one gather per iteration (same displacement law, done in parallel).
* Spatter, severities 1-3 ("water"): the reference's OpenCV chain (Canny edges, distance
  transform, histogram equalisation, emboss) is rebuilt from torch ops: the edges are the
  border of the liquid mask and the distance is a chessboard distance by repeated
  max-pooling (truncated at 20 as in the reference).
* Frost uses the frost photographs that ``imagecorruptions`` ships, read from that package's
  folder (without importing it); without the package installed, ``frost`` raises a
  :class:`~convscope.errors.ConvscopeError` saying so.
"""

from __future__ import annotations

import torch

from ...checks import check_images
from ...errors import ConvscopeError
from .registry import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    Corruption,  # noqa: F401
    CorruptionFn,  # noqa: F401
)

# the corruptions register themselves, in this order
from . import noise, blur, weather, digital  # noqa: E402,F401,I001
from ._filters import _motion_blur  # noqa: E402,F401  (the helpers the reference tests compare)
from .weather import _frost_rescaled, _plasma_fractal  # noqa: E402,F401

__all__ = ["BENCHMARK_CORRUPTIONS", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "Corruption", "corrupt"]


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int | None = None) -> torch.Tensor:
    """Apply the ImageNet-C corruption ``name`` at ``severity`` to a batch of images.

    Args:
        x: images (N, 3, H, W) in [0, 1], H and W at least 32 (as the reference requires).
        name: one of ``CORRUPTIONS.names()`` (``"gaussian_noise"``, ..., ``"saturate"``).
        severity: 1 (mild) to 5 (strong).
        seed: seed of the random draws (a fresh random seed when None).

    Returns:
        Corrupted images, same shape, dtype and device, in [0, 1].

    >>> foggy = corrupt(load_image("sample:chelsea"), "fog", 3, seed=0)
    """
    x = check_images(x)
    if x.shape[-1] < 32 or x.shape[-2] < 32:
        raise ConvscopeError(f"corruptions need images of at least 32x32 pixels, got {tuple(x.shape[-2:])}")
    if severity not in SEVERITIES:
        raise ConvscopeError(f"severity must be an integer from 1 to 5, got {severity!r}")
    function = CORRUPTIONS.get(name)
    generator = torch.Generator(device=x.device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    with torch.no_grad():
        out = function(x.detach().float(), int(severity), generator)
    return out.clamp(0, 1).to(x.dtype)
