"""Feature inversion (Mahendran & Vedaldi 2015) and embedding inversion.

:func:`invert` finds an image x whose representation at a layer matches that of a photo:
minimise ‖Φ(x) − Φ0‖² / ‖Φ0‖² + λ_α·mean|x − ½|^α + λ_TV·mean TV^β(x), from noise.
Deviations from the official code: Adam on a Fourier, colour-decorrelated image
(the visualization parameterization) instead of momentum SGD on pixels; the α-norm and
TV are means over pixels of a [0, 1] image, so the weights are not the paper's numbers.
As in the paper, λ_TV grows with depth: here in proportion to the layer's stride in input
pixels beyond 4 (``tv_weight · max(1, stride / 4)``), which smooths the deep reconstructions
without raising their representation error.

:func:`invert_embedding` optimizes an image towards a target vector of any encoder
(cosine similarity), e.g. a CLIP text embedding for a CLIP image encoder.
"""

from __future__ import annotations

__all__ = ["depth_scaled_tv", "Inversion", "invert", "invert_embedding", "invert_sweep", "representation"]

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..checks import check_images
from ..hooks import capture, frozen
from ..errors import ConvscopeError
from ..layers import check_layers, receptive_field
from .loop import evaluate, optimize
from .objectives import embedding, match_activations
from .params import image_param
from .regularizers import alpha_norm, total_variation
from .transforms import STANDARD, Transform
from .visualize import Visualization, render


@dataclass
class Inversion:
    """A reconstruction from one layer's representation.

    Attributes:
        image: the reconstructions (N, 3, H, W) in [0, 1].
        layer: the inverted layer.
        relative_error: ‖Φ(x) − Φ0‖² / ‖Φ0‖² of each final image (N,).
        history: the full objective (minus the loss) at every step.
        stopped: ``"done"``, ``"early stop"`` or ``"interrupted"``.
    """

    image: torch.Tensor
    layer: str
    relative_error: torch.Tensor
    history: list[float]
    stopped: str = "done"


def representation(model: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """Φ0: the output of ``layer`` for ``images`` (detached)."""
    images = check_images(images, "images", bounds=False)
    (layer,) = check_layers(model, [layer])
    with frozen(model), capture(model, layer, detach=True) as seen, torch.no_grad():
        model(images)
    return seen[layer]


def depth_scaled_tv(model: nn.Module, layer: str, size: tuple[int, int], tv_weight: float) -> float:
    """``tv_weight · max(1, stride / 4)``: λ_TV for ``layer``, whose units lie ``stride`` input
    pixels apart (a global layer's one unit spans the image: stride = the image side; a layer
    off the traced image path keeps ``tv_weight``)."""
    try:
        field = receptive_field(model, layer, size)
    except ConvscopeError:
        return tv_weight
    stride = max(field.jump) if field.size is not None else max(size)
    return tv_weight * max(1.0, stride / 4)


def invert(
    model: nn.Module,
    image: torch.Tensor,
    layer: str,
    *,
    steps: int = 200,
    lr: float = 0.05,
    alpha: float = 6.0,
    alpha_weight: float = 1.0,
    tv_weight: float = 0.5,
    tv_beta: float = 2.0,
    tv_by_depth: bool = True,
    param: str = "fft",
    seed: int = 0,
    progress: bool = True,
) -> Inversion:
    """Reconstruct ``image`` (N, 3, H, W) in [0, 1] from its representation at ``layer``.

    ``tv_weight`` is λ_TV at layers of stride ≤ 4; with ``tv_by_depth`` it grows with the
    layer's stride (:func:`depth_scaled_tv`), otherwise it is used as is.

    >>> result = invert(model, load_image("sample:chelsea", 128), "blocks.1")
    >>> float(result.relative_error[0]) < 0.1
    True
    """
    image = check_images(image, "image")
    (layer,) = check_layers(model, [layer])
    target = representation(model, image, layer)
    loss = match_activations(layer, target)
    if tv_by_depth:
        tv_weight = depth_scaled_tv(model, layer, tuple(image.shape[-2:]), tv_weight)
    objective = -loss - alpha_weight * alpha_norm(alpha) - tv_weight * total_variation(tv_beta)
    start = image_param(
        image.shape[0],
        tuple(image.shape[-2:]),
        basis=param,
        generator=torch.Generator().manual_seed(seed),
        device=image.device,
    )
    run = optimize(
        model, objective, start, steps=steps, lr=lr, seed=seed, progress=progress, description=f"invert {layer}"
    )
    return Inversion(run.image, layer, evaluate(model, loss, run.image), run.history, run.stopped)


def invert_sweep(model: nn.Module, image: torch.Tensor, layers: Sequence[str], **options) -> list[Inversion]:
    """:func:`invert` at each of ``layers`` (reconstructions get fuzzier with depth, as in the paper)."""
    return [invert(model, image, layer, **options) for layer in layers]


def invert_embedding(
    model: nn.Module,
    target: torch.Tensor,
    *,
    layer: str | None = None,
    size: int = 128,
    tv_weight: float = 0.0,
    transforms: Sequence[Transform] | None = STANDARD,
    **options,
) -> Visualization:
    """Optimize an image whose output vector points along ``target`` (D,) or (N, D) (cosine).

    ``model`` is any encoder taking images in [0, 1] (``layer=None``: its output is the
    embedding, e.g. ``open_clip``'s ``encode_image`` wrapped with its own normalisation);
    or name a layer (spatial layers are averaged over positions). Uses the visualization
    defaults (Fourier basis, decorrelated colours, standard transforms).

    >>> goal = representation(model, load_image("sample:coffee"), "global_pool")
    >>> shown = invert_embedding(model, goal[0], layer="global_pool")
    """
    objective = embedding(target, layer)
    if tv_weight:
        objective = objective - tv_weight * total_variation()
    count = target.shape[0] if target.ndim == 2 else 1
    return render(model, objective, size=size, batch=count, transforms=transforms, **options)
