"""Adversarial patch (Brown et al. 2017): one printable sticker that turns any photo into a target class.

Unlike the per-image attacks, the patch is *universal*: a round patch ``p`` is placed on
training images at a random position, rotation and scale (the paper's patch operator
``A(p, x, l, t)``) and trained with Adam to maximize ``E_{x, l, t} log P(target | A(p, x, l, t))``
over the images and placements. It is not bounded in size of change, only in area: the
patch is opaque over ``scale`` (a fraction of the image side) and leaves the rest of the
image untouched. Success is measured on images and placements never used in training
(:func:`patch_success`).

Conventions: images and the patch in [0, 1]; the patch is a pixel tensor clamped after
every step; placements are drawn per image and step from ``generator``.
"""

from __future__ import annotations

__all__ = [
    "adversarial_patch",
    "apply_patch",
    "circle_mask",
    "HELD_OUT_SAMPLES",
    "patch_figure",
    "patch_success",
    "PatchResult",
    "Placement",
    "TRAIN_SAMPLES",
]

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..checks import check_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import progress_bar


@dataclass
class Placement:
    """Where the patch goes on each image: side as a fraction of the image side, rotation
    (radians), centre (y, x) in [-1, 1] image coordinates. Each a Tensor[N]."""

    scale: torch.Tensor
    angle: torch.Tensor
    centre_y: torch.Tensor
    centre_x: torch.Tensor

    @staticmethod
    def random(
        count: int,
        scale: tuple[float, float],
        rotation: float,
        generator: torch.Generator | None,
        device: torch.device | str = "cpu",
    ) -> Placement:
        """Uniform scale in ``scale``, angle in ±``rotation`` degrees, the round patch inside the image."""

        def uniform(low, high):
            return low + (high - low) * torch.rand(count, generator=generator).to(device)

        side = uniform(*scale)
        room = 1 - side  # the circle's radius is the half side, ``scale`` in normalised units
        return Placement(
            side, uniform(-rotation, rotation) * math.pi / 180, uniform(-1, 1) * room, uniform(-1, 1) * room
        )


def circle_mask(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, 1, size, size): 1 inside the inscribed circle (the paper's round patch)."""
    grid = (torch.arange(size, device=device) + 0.5) / size * 2 - 1
    return ((grid[:, None] ** 2 + grid[None, :] ** 2) <= 1).float()[None, None]


def apply_patch(images: torch.Tensor, patch: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Paste the round ``patch`` (3, S, S) onto ``images`` (N, 3, H, W) at ``placement``
    (bilinear, differentiable in the patch): Brown et al.'s operator A(p, x, l, t)."""
    count, _, height, width = images.shape
    cos, sin, aspect = torch.cos(placement.angle), torch.sin(placement.angle), width / height
    # image coordinates -> patch coordinates (affine_grid's direction): move the centre to 0,
    # undo the aspect ratio and the rotation, divide by the half side (= scale in y units)
    linear = torch.stack([torch.stack([cos * aspect, sin], dim=1), torch.stack([-sin * aspect, cos], dim=1)], dim=1)
    linear = linear / placement.scale.view(-1, 1, 1)
    centre = torch.stack([placement.centre_x, placement.centre_y], dim=1)[:, :, None]
    theta = torch.cat([linear, -(linear @ centre)], dim=2).to(images.dtype)
    grid = F.affine_grid(theta, [count, 3, height, width], align_corners=False)
    source = torch.cat(
        [patch[None].expand(count, -1, -1, -1), circle_mask(patch.shape[-1], patch.device).expand(count, 1, -1, -1)],
        dim=1,
    )
    pasted = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ink, mask = pasted[:, :3], pasted[:, 3:]
    return images * (1 - mask) + ink * mask


@dataclass
class PatchResult:
    """A trained patch.

    Attributes:
        patch: (3, S, S) in [0, 1] (round: only the inscribed circle is used).
        target: the class it pushes towards.
        history: mean log P(target) over each step's batch of patched images.
        stopped: ``"done"`` or ``"interrupted"``.
    """

    patch: torch.Tensor
    target: int
    history: list[float] = field(default_factory=list)
    stopped: str = "done"


def adversarial_patch(
    model: torch.nn.Module,
    images: torch.Tensor,
    target: int,
    *,
    size: int = 64,
    scale: tuple[float, float] = (0.3, 0.45),
    rotation: float = 22.5,
    steps: int = 200,
    lr: float = 0.05,
    batch_size: int = 8,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> PatchResult:
    """Train a universal round patch that makes ``model`` predict ``target`` on ``images``.

    Args:
        model: classifier taking RGB in [0, 1]; images: training photos (N, 3, H, W) in [0, 1].
        target: class id; size: patch resolution (pixels, before scaling onto the image).
        scale: patch side as a fraction of the image side (0.3–0.45: 7–16 % of the area).
        rotation: ± degrees; steps, lr: Adam; batch_size: images per step (drawn with replacement).
        generator: random source for images and placements; progress: progress bar (Ctrl-C
            stops and returns the patch so far).

    >>> result = adversarial_patch(model, load_folder("photos/"), class_index("toaster", model.labels))
    """
    images = check_images(images, "images")
    classes = None
    if steps < 1 or size < 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ConvscopeError("patch needs steps >= 1, size >= 2 and 0 < scale[0] <= scale[1] <= 1 (it must fit)")
    device = images.device
    patch = torch.rand(3, size, size, generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([patch], lr=lr)
    result = PatchResult(patch.detach(), int(target))
    with frozen(model), progress_bar(steps, "adversarial patch", progress) as advance:
        for _ in range(steps):
            chosen = torch.randint(len(images), (batch_size,), generator=generator).to(device)
            placement = Placement.random(batch_size, scale, rotation, generator, device)
            logits = model(apply_patch(images[chosen], patch, placement))
            if classes is None:
                classes = logits.shape[-1]
                if not 0 <= target < classes:
                    raise ConvscopeError(f"target {target} out of range for {classes} classes")
            log_p = logits.log_softmax(dim=-1)[:, target]
            optimizer.zero_grad()
            (-log_p.mean()).backward()
            optimizer.step()
            with torch.no_grad():
                patch.clamp_(0, 1)
            result.history.append(float(log_p.detach().mean()))
            result.patch = patch.detach().clone()
            advance(1)
    if len(result.history) < steps:
        result.stopped = "interrupted"
    return result


@torch.no_grad()
def patch_success(
    model: torch.nn.Module,
    images: torch.Tensor,
    patch: torch.Tensor,
    target: int,
    *,
    placements: int = 8,
    scale: tuple[float, float] = (0.3, 0.45),
    rotation: float = 22.5,
    generator: torch.Generator | None = None,
) -> float:
    """Fraction of (image, fresh random placement) pairs classified as ``target``: the paper's
    success rate, on images and placements not used in training."""
    images = check_images(images, "images")
    hits, total = 0, 0
    with frozen(model):
        for _ in range(placements):
            placement = Placement.random(len(images), scale, rotation, generator, images.device)
            predicted = model(apply_patch(images, patch, placement)).argmax(dim=-1)
            hits += int((predicted == target).sum())
            total += len(images)
    return hits / total


#: bundled photos a patch is trained on, and the ones it is tested on, when no folder is given.
TRAIN_SAMPLES = ("chelsea", "coffee", "astronaut", "rocket")
HELD_OUT_SAMPLES = ("camera", "coins", "hubble_deep_field", "page")


def patch_figure(
    model: torch.nn.Module,
    images: torch.Tensor,
    result: PatchResult,
    path,
    *,
    scale: tuple[float, float] = (0.3, 0.45),
    rotation: float = 22.5,
    generator: torch.Generator | None = None,
    success: float | None = None,
):
    """The patch (titled with how its training moved log P(target)), then each image with the
    patch at a fresh random place, titled with the model's top-1 prediction and its probability;
    the figure's title names the model, the target class, how many of the shown images the patch
    turned into it and, given ``success`` (:func:`patch_success` on these images), the success
    rate over many placements."""
    from ..predictions import predict
    from ..render import Panel, figure
    from ..targets import class_name

    with torch.no_grad():
        patched = apply_patch(
            images, result.patch, Placement.random(len(images), scale, rotation, generator, images.device)
        )
    goal = class_name(getattr(model, "labels", None), result.target)
    trained = f"patch → {goal}"
    if result.history:
        trained += f"\nlog P {result.history[0]:.1f} → {result.history[-1]:.1f} in {len(result.history)} steps"
    panels = [Panel(result.patch * circle_mask(result.patch.shape[-1], result.patch.device)[0], trained)]
    hits = 0
    for image, top in zip(patched, predict(model, patched, 1)):
        hit = top[0].class_id == result.target
        hits += hit
        panels.append(Panel(image, f"{'✓ ' if hit else ''}{top[0].label} p = {top[0].probability:.2f}"))
    side = f"{scale[0]:.0%}–{scale[1]:.0%}"
    title = (
        f"{getattr(model, 'name', type(model).__name__)}: adversarial patch for “{goal}” ({result.target}), "
        f"{hits}/{len(patched)} shown images now top-1 “{goal}” (patch {side} of the image side)"
        + (f"; success at random placements {100 * success:.0f}%" if success is not None else "")
    )
    return figure(panels, path, columns=min(5, len(panels)), suptitle=title)
