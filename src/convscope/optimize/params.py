"""Image parameterizations: the tensors the optimizer changes, and how they become an image.

Following lucent (Olah et al. 2017, "Feature Visualization"), an image is
``output(decorrelate(basis(params)))``:

* basis ``"pixel"`` (the parameter is the picture) or ``"fft"`` (a real-FFT spectrum
  scaled by 1/max(f, 1/max(H, W)), inverse-transformed with ``norm="ortho"`` and ÷4,
  lucent's ``fft_image``): the Fourier basis whitens the gradient so high frequencies do
  not dominate;
* optional colour decorrelation with lucent's √C matrix (ImageNet colour correlations)
  normalised by its largest column norm;
* output ``"sigmoid"`` (smooth, lucent's choice) or ``"clamp"`` (the parameter is clamped
  into [0, 1] after every step: the picture itself for pixel bases, used when starting
  from a photo).

A batch of images is one parameter tensor. ``init`` starts from given images (any basis:
the parameters are solved so that the first image equals ``init``, up to the sigmoid's
open interval).
"""

from __future__ import annotations

__all__ = [
    "BASES",
    "COLOR_CORRELATION",
    "COLOR_CORRELATION_SQRT",
    "image_param",
    "ImageParam",
    "OUTPUTS",
    "spectrum_scale",
]

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import ConvscopeError

#: lucent's square root of the ImageNet colour correlation matrix.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()
BASES = ("pixel", "fft")
OUTPUTS = ("sigmoid", "clamp")


@dataclass
class ImageParam:
    """A parameterized batch of images.

    Attributes:
        tensor: the leaf tensor the optimizer updates.
        to_image: () -> (N, 3, H, W) in [0, 1], differentiable in ``tensor``.
        basis, decorrelate, output: the choices that made it.
        project: called after each optimizer step (clamps ``clamp`` pixel images).
    """

    tensor: torch.Tensor
    to_image: Callable[[], torch.Tensor]
    basis: str
    decorrelate: bool
    output: str
    project: Callable[[], None] = field(default=lambda: None)

    def __call__(self) -> torch.Tensor:
        return self.to_image()

    @property
    def pixels(self) -> torch.Tensor:
        """The picture itself, for step operations (only the ``pixel`` basis with ``clamp``)."""
        if self.basis != "pixel" or self.decorrelate or self.output != "clamp":
            raise ConvscopeError("blur/clipping steps need param='pixel', decorrelate=False, output='clamp'")
        return self.tensor


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """1 / max(|f|, 1/max(H, W))^decay_power on the rfft2 grid (H, W // 2 + 1)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    frequency = (fx.pow(2) + fy.pow(2)).sqrt()
    return 1.0 / frequency.clamp_min(1.0 / max(height, width)).pow(decay_power)


def _decorrelate(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nchw,dc->ndhw", image, COLOR_CORRELATION.to(image))


def _correlate(image: torch.Tensor) -> torch.Tensor:
    inverse = torch.linalg.inv(COLOR_CORRELATION.double()).to(image)
    return torch.einsum("nchw,dc->ndhw", image, inverse)


def image_param(
    batch: int = 1,
    size: int | tuple[int, int] = 224,
    *,
    basis: str = "fft",
    decorrelate: bool = True,
    output: str = "sigmoid",
    sd: float = 0.01,
    decay_power: float = 1.0,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ImageParam:
    """Make a parameterized image batch (see the module notes for the choices).

    Args:
        batch: number of images (ignored when ``init`` is given: its batch is used).
        size: side or (height, width) (ignored with ``init``).
        basis: ``"pixel"`` or ``"fft"``.
        decorrelate: mix colours through lucent's decorrelation matrix.
        output: ``"sigmoid"`` or ``"clamp"``.
        sd: standard deviation of the random start (lucent: 0.01).
        decay_power: exponent of the 1/f spectrum scaling (fft only).
        init: (N, 3, H, W) images in [0, 1] to start from instead of noise.
        generator: random source for the start.
        device: where the tensors live (``init``'s device by default).

    >>> param = image_param(2, 128)
    >>> param().shape
    torch.Size([2, 3, 128, 128])
    """
    if basis not in BASES:
        raise ConvscopeError(f"unknown image parameterization {basis!r}; choose one of {', '.join(BASES)}")
    if output not in OUTPUTS:
        raise ConvscopeError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    if init is not None:
        device = init.device if device is None else device
        batch, height, width = init.shape[0], init.shape[-2], init.shape[-1]
    else:
        height, width = (size, size) if isinstance(size, int) else size
    device = torch.device(device or "cpu")
    scale = spectrum_scale(height, width, decay_power).to(device)[None, None, :, :, None] if basis == "fft" else None

    def linear_image(tensor: torch.Tensor) -> torch.Tensor:
        if basis == "pixel":
            return tensor
        spectrum = torch.view_as_complex((scale * tensor).contiguous())
        return torch.fft.irfft2(spectrum, s=(height, width), norm="ortho") / 4.0

    def to_image() -> torch.Tensor:
        image = linear_image(tensor)
        image = _decorrelate(image) if decorrelate else image
        return torch.sigmoid(image) if output == "sigmoid" else image.clamp(0, 1)

    if init is None:
        shape = (batch, 3, height, width) if basis == "pixel" else (batch, 3, height, width // 2 + 1, 2)
        tensor = torch.randn(shape, generator=generator).to(device) * sd
        if basis == "pixel" and output == "clamp":
            tensor = tensor + 0.5
    else:
        target = init.detach().to(device).float()
        target = torch.logit(target.clamp(1e-3, 1 - 1e-3)) if output == "sigmoid" else target
        target = _correlate(target) if decorrelate else target
        if basis == "pixel":
            tensor = target.clone()
        else:
            tensor = torch.view_as_real(torch.fft.rfft2(target * 4.0, norm="ortho")) / scale
    tensor = tensor.contiguous().requires_grad_(True)

    def project() -> None:
        if output == "clamp" and basis == "pixel" and not decorrelate:
            with torch.no_grad():
                tensor.clamp_(0, 1)

    return ImageParam(tensor, to_image, basis, decorrelate, output, project)
