"""Activation maximization (feature visualization): images that excite a unit, a channel or a class.

Erhan et al. 2009; Simonyan et al. 2014 (class models: maximise the pre-softmax logit);
Olah et al. 2017 (Fourier basis, colour decorrelation and transformation robustness, the
defaults here, matching lucent's ``render_vis``: Adam lr 0.05, ``fft_image(sd=0.01)``,
decorrelated colours through a sigmoid, the standard transforms). Deviation: 256 steps
by default instead of lucent's 512, and no ReLU gradient "redirection" (lucid's
early-step trick) — the model's own gradients are used throughout.
"""

from __future__ import annotations

__all__ = ["photo_scores", "render", "robust_scores", "Visualization", "visualize_channel", "visualize_class"]

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..checks import check_images, model_device
from ..images import SAMPLES, load_image
from ..targets import class_index
from .loop import OptimizationResult, evaluate, optimize
from .objectives import Objective, as_objective, channel, class_logit
from .params import image_param
from .regularizers import StepOperation
from .transforms import STANDARD, Transform


@dataclass
class Visualization:
    """A rendered visualization and its record.

    Attributes:
        image: (N, 3, H, W) in [0, 1].
        objective: the objective's description.
        scores: the objective for each final image, without transforms (N,).
        history: the objective (batch mean, under transforms) at every step.
        run: the full :class:`~convscope.optimize.loop.OptimizationResult` (snapshots, stop reason).
    """

    image: torch.Tensor
    objective: str
    scores: torch.Tensor
    history: list[float]
    run: OptimizationResult

    def _repr_png_(self) -> bytes:
        from PIL import Image
        from torchvision.utils import make_grid

        from ..images import to_uint8
        from ..render import png_bytes

        grid = make_grid(self.image.detach().cpu(), nrow=min(8, len(self.image)), padding=2, pad_value=1.0)
        return png_bytes(Image.fromarray(to_uint8(grid)))


def render(
    model: nn.Module,
    objective: Objective,
    *,
    size: int | tuple[int, int] = 128,
    batch: int = 1,
    param: str = "fft",
    decorrelate: bool = True,
    output: str = "sigmoid",
    transforms: Sequence[Transform] | None = STANDARD,
    steps: int = 256,
    lr: float = 0.05,
    optimizer: str = "adam",
    seed: int = 0,
    progress: bool = True,
    snapshot_every: int | None = None,
    early_stop: int | None = None,
    step_operations: Sequence[StepOperation] = (),
    init: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> Visualization:
    """Optimize images from noise (or ``init``) to maximize ``objective``.

    Args:
        model: any CNN taking RGB in [0, 1] (e.g. from :func:`convscope.load_model`).
        objective: what to maximize, e.g. ``channel("blocks.4", 7)``.
        size: image side or (height, width).
        batch: how many images (objectives with per-image indices set it by their length).
        param, decorrelate, output: the parameterization (see :func:`~convscope.optimize.params.image_param`).
        transforms: random transforms per step (lucent's standard set; ``None`` or ``()`` for none).
        steps, lr, optimizer, seed, progress, snapshot_every, early_stop, step_operations: see
            :func:`~convscope.optimize.loop.optimize`.
        init: start from these images instead of noise.
        device: where to optimize (the model's device by default).

    >>> shown = render(model, channel("blocks.4", 7), size=128, steps=64)
    >>> shown.image.shape
    torch.Size([1, 3, 128, 128])
    """
    objective = as_objective(objective)
    device = torch.device(device) if device is not None else model_device(model)
    generator = torch.Generator().manual_seed(seed)
    images = image_param(
        batch, size, basis=param, decorrelate=decorrelate, output=output, init=init, generator=generator, device=device
    )
    run = optimize(
        model,
        objective,
        images,
        transforms=transforms or (),
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        progress=progress,
        snapshot_every=snapshot_every,
        early_stop=early_stop,
        step_operations=step_operations,
        description=f"visualize {objective.name}",
    )
    return Visualization(run.image, objective.name, evaluate(model, objective, run.image), run.history, run)


def visualize_channel(model: nn.Module, layer: str, channels: int | Sequence[int], **options) -> Visualization:
    """Render one image per channel of ``layer`` (a list renders a batch, one channel each).

    >>> grid = visualize_channel(model, "blocks.4", [0, 1, 2, 3], steps=128)
    """
    count = 1 if isinstance(channels, int) else len(channels)
    return render(model, channel(layer, channels), batch=count, **options)


def visualize_class(model: nn.Module, target: int | str | Sequence[int | str], **options) -> Visualization:
    """Render images of a class (by id or name): maximise its logit (Simonyan et al. 2014)."""
    targets = [target] if isinstance(target, (int, str)) else list(target)
    labels = getattr(model, "labels", None)
    ids = [class_index(t, labels) for t in targets]
    return render(model, class_logit(ids), batch=len(ids), **options)


def photo_scores(
    model: nn.Module, objective: Objective, size: int = 224, names: Sequence[str] = SAMPLES
) -> dict[str, float]:
    """The objective on every bundled scikit-image picture (``sample:NAME`` at ``size``): the
    "dataset examples" to compare a visualization with (Olah et al. 2017). Objectives with
    per-image indices need a batch of one: score one channel at a time."""
    device = model_device(model)
    photos = torch.cat([load_image(f"sample:{name}", size) for name in names]).to(device)
    return dict(zip(names, evaluate(model, objective, photos).tolist()))


def robust_scores(
    model: nn.Module,
    objective: Objective,
    images: torch.Tensor,
    *,
    transforms: Sequence[Transform] = STANDARD,
    views: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    """The objective averaged over ``views`` random transformed views of each image (N,): how much
    of an activation survives jitter, scale and rotation. Plain pixel ascent finds
    high-frequency patterns with a higher raw score that collapse under these views."""
    from .transforms import compose

    images = check_images(images, "images")
    generator, transform = torch.Generator().manual_seed(seed), compose(transforms)
    views_scores = [evaluate(model, objective, transform(images, generator)) for _ in range(views)]
    return torch.stack(views_scores).mean(dim=0)
