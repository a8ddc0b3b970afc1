"""Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"), L∞ (Algorithm 2) and L2 (Algorithm 3), score-based.

Only the model's outputs are used: the loss is the margin ``z_y − max_{i≠y} z_i`` of the logits
(untargeted; ``max_{i≠t} z_i − z_t`` targeted), and an image stops querying once it is below 0
(fooled). Each query changes a random square of side ``round(sqrt(p · H · W))`` whose fraction
``p`` follows the paper's schedule from ``p_init`` (halved at 10, 50, 200, 500, 1000, 2000, 4000,
6000, 8000 of 10000 queries, rescaled to the budget); a candidate is kept if it lowers the margin.

* L∞: start from vertical stripes of ±eps; the square is set to ``x ± eps`` (one sign per channel).
  As in the paper's code, signs that would leave the image unchanged are redrawn, so no query is
  spent on a no-op. Side in [1, min(H, W) − 1].
* L2: start from a grid of squares of side ``min(H, W) // 5``, each filled with the pattern η of
  eq. (2) (mass concentrated at the centre, decaying as 1/(k + 1)²) with a random sign per channel,
  scaled to norm eps. Each query draws two squares W1, W2 of odd side ≥ 3: per channel, the
  perturbation in W2 is zeroed and W1 gets ``ρη* + ν_W1/‖ν_W1‖`` rescaled to the freed budget
  ``sqrt(‖ν_{W1∪W2}‖² + (ε² − ‖ν‖²)/C)``, so ``‖ν‖₂ = eps`` and, after clipping to [0, 1],
  ``‖x_adv − x‖₂ ≤ eps``. η is used, as in the paper's experiments, as two halves of opposite sign
  (split horizontally or vertically at random).

Every square is drawn per image (the paper's per-image loop; torchattacks shares one square across
the batch); the still-unfooled images of a batch are queried together in one forward pass, kept
compact (fooled images leave the working set and are written back once).
"""

from __future__ import annotations

__all__ = ["p_schedule", "square", "square_pattern"]

import math

import torch

from ..checks import checks_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import check_eps, labels_for, progress_bar
from .registry import ATTACKS

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_REDRAWS = 16  # L∞: redraws of the signs when a square would change nothing (eps > 0 makes one change likely)


def p_schedule(p_init: float, step: int, queries: int) -> float:
    """The paper's fraction of pixels in the square at query ``step`` of ``queries``:
    ``p_init`` halved at each mark of the 10000-query schedule passed (rescaled to ``queries``)."""
    return p_init / 2 ** sum(int(step * 10000 / queries) > mark for mark in _SCHEDULE)


def _bump(rows: int, columns: int) -> torch.Tensor:
    """Eq. (2) on a rows × columns rectangle: at Chebyshev distance d from the centre,
    ``Σ_{k=d}^{n} 1/(k + 1)²`` with n = max(rows, columns) // 2."""
    n = max(rows, columns) // 2
    r = (torch.arange(rows) - rows // 2).abs().view(-1, 1)
    c = (torch.arange(columns) - columns // 2).abs().view(1, -1)
    distance = torch.maximum(r, c)
    tail = (1.0 / torch.arange(1, n + 2, dtype=torch.float64) ** 2).flip(0).cumsum(0).flip(0)  # tail[d]
    return tail[distance.clamp(max=n)]


def square_pattern(side: int) -> torch.Tensor:
    """The L2 update shape η*: two halves (rows ``side // 2`` and the rest) of eq. (2) with opposite
    signs, unit L2 norm, float64 (side, side)."""
    pattern = torch.cat([_bump(side // 2, side), -_bump(side - side // 2, side)])
    return pattern / pattern.norm()


def _margin(model, images, labels, targeted):
    logits = model(images)
    chosen = logits.gather(1, labels[:, None])[:, 0]
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=-1)
    return other - chosen if targeted else chosen - other


class _Sampler:
    """Random squares and signs for a working set of ``count`` images of size height × width."""

    def __init__(self, x: torch.Tensor, generator: torch.Generator | None):
        self.generator, self.device, self.dtype = generator, x.device, x.dtype
        _, self.channels, self.height, self.width = x.shape
        self.rows = torch.arange(self.height, device=x.device).view(1, 1, -1, 1)
        self.columns = torch.arange(self.width, device=x.device).view(1, 1, 1, -1)

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def signs(self, count: int) -> torch.Tensor:
        return torch.sign(self.uniform(count, self.channels, 1, 1) - 0.5)

    def corner(self, count: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-left corners, uniform over the ``(H − side + 1) × (W − side + 1)`` positions."""
        top = (self.uniform(count) * (self.height - side + 1)).long().view(-1, 1, 1, 1)
        left = (self.uniform(count) * (self.width - side + 1)).long().view(-1, 1, 1, 1)
        return top, left

    def window(self, top: torch.Tensor, left: torch.Tensor, side: int) -> torch.Tensor:
        """Bool (count, 1, H, W): the square of ``side`` at each image's corner."""
        rows, columns = self.rows - top, self.columns - left
        return (rows >= 0) & (rows < side) & (columns >= 0) & (columns < side)


def _linf_start(x, sampler):
    """Vertical stripes as the L∞ state: 1 where a pixel is at ``x + eps``, 0 at ``x − eps`` (N, C, H, W)."""
    stripes = (sampler.uniform(x.shape[0], x.shape[1], 1, x.shape[3]) > 0.5).to(x.dtype)
    return stripes.expand(x.shape).clone()


def _linf_candidate(work, side, sampler):
    """Algorithm 2's proposal: a square set to ``x ± eps``, one sign per channel; signs that would
    change nothing (the square already has them) are redrawn, as in the paper's code."""
    positive = work["state"]
    count, channels = positive.shape[:2]
    window = sampler.window(*sampler.corner(count, side), side).to(positive.dtype)
    inside = (positive * window).sum(dim=(2, 3))  # (count, C): pixels at x + eps in the square
    signs = (sampler.signs(count) > 0).to(positive.dtype)
    for _ in range(_REDRAWS):
        same = torch.where(signs.view(count, channels) > 0, inside == side * side, inside == 0).all(dim=1)
        if not bool(same.any()):
            break
        fresh = (sampler.signs(count) > 0).to(positive.dtype)
        signs = torch.where(same.view(-1, 1, 1, 1), fresh, signs)
    return torch.lerp(positive, signs, window)  # lerp with 0/1 weights is exact (torch.where is slower on CPU)


def _image(work):
    """The images a working state stands for (L∞: ``x ± eps`` per pixel; L2: the images themselves)."""
    return torch.lerp(work["lower"], work["upper"], work["state"]) if "upper" in work else work["state"]


def _l2_start(x, eps, sampler):
    """Paper's L2 start: a centred grid of squares of side min(H, W) // 5, each η with a random sign
    per channel and orientation, the whole perturbation scaled to norm eps."""
    count, channels, height, width = x.shape
    side = max(min(height, width) // 5, 1)
    across, down = width // side, height // side
    shapes = torch.stack([square_pattern(side), square_pattern(side).T]).to(x.device, x.dtype)
    flips = (sampler.uniform(count, down, across) < 0.5).long()
    tiles = shapes[flips].permute(0, 1, 3, 2, 4).reshape(count, 1, down * side, across * side)
    signs = torch.sign(sampler.uniform(count, channels, down, across) - 0.5)
    signs = signs.repeat_interleave(side, dim=2).repeat_interleave(side, dim=3)
    delta = torch.zeros_like(x)
    top, left = (height - down * side) // 2, (width - across * side) // 2
    delta[:, :, top : top + down * side, left : left + across * side] = tiles * signs
    delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
    return (x + delta).clamp(0, 1)


def _l2_candidate(work, side, eps, sampler):
    """Algorithm 3: move the perturbation's mass of W2 into W1 with a new η-shaped update."""
    x, current = work["x"], work["state"]
    count, channels = x.shape[:2]
    delta = current - x
    top, left = sampler.corner(count, side)
    first = sampler.window(top, left, side).to(x.dtype)
    union = torch.maximum(first, sampler.window(*sampler.corner(count, side), side).to(x.dtype))
    # η* placed in W1 of each image (transposed for a random half of them)
    shapes = torch.stack([square_pattern(side), square_pattern(side).T]).to(x.device, x.dtype).flatten(1)
    local = (sampler.rows - top).clamp(0, side - 1) * side + (sampler.columns - left).clamp(0, side - 1)
    flips = (sampler.uniform(count) < 0.5).long()
    eta = shapes[flips].gather(1, local.flatten(1)).view_as(first) * first
    squared = delta * delta
    unused = (eps * eps - squared.sum(dim=(1, 2, 3))).clamp_min(0).view(-1, 1, 1, 1)
    inside = (squared * first).sum(dim=(2, 3), keepdim=True).sqrt()
    update = sampler.signs(count) * eta + delta * first / inside.clamp_min(1e-12)
    available = ((squared * union).sum(dim=(2, 3), keepdim=True) + unused / channels).sqrt()
    scale = available / (update * update).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    delta = delta * (1 - union) + update * scale
    excess = (delta.flatten(1).norm(dim=1) / max(eps, 1e-12)).clamp_min(1).view(-1, 1, 1, 1)  # float rounding only
    return (x + delta / excess).clamp(0, 1)


@checks_images
def square(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    *,
    norm: str = "inf",
    queries: int = 5000,
    p_init: float = 0.8,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Square attack in the L∞ or L2 ball of radius ``eps``.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, C, H, W) in [0, 1].
        y: true labels (the prediction when None), or target classes when ``targeted``.
        eps: radius in pixel units; norm: ``"inf"`` or ``"2"``.
        queries: budget per image, the start included (5000 as AutoAttack/torchattacks).
        p_init: initial fraction of pixels in the square (0.8 as AutoAttack, both norms).
        generator: random source; progress: progress bar (Ctrl-C returns the best so far).

    Returns:
        ``(x_adv, queries)``: adversarial images and LongTensor[N] of queries used per image.

    >>> x_adv, used = square(model, x, eps=8/255, queries=1000)
    >>> x_adv, used = square(model, x, eps=0.5, norm="2")
    """
    eps = check_eps(eps)
    norm = str(norm).lower().replace("l", "")
    if norm not in ("inf", "2"):
        raise ConvscopeError(f"square: norm must be 'inf' or '2', got {norm!r}")
    if queries < 1 or not 0 < p_init <= 1:
        raise ConvscopeError("square needs queries >= 1 and 0 < p_init <= 1")
    x = x.detach()
    height, width = x.shape[2:]
    sampler = _Sampler(x, generator)
    with frozen(model), torch.no_grad():
        y = labels_for(model, x, y)
        if norm == "inf":
            work = {"state": _linf_start(x, sampler), "upper": (x + eps).clamp(0, 1), "lower": (x - eps).clamp(0, 1)}
        else:
            work = {"state": _l2_start(x, eps, sampler)}
        adv = _image(work)
        loss = _margin(model, adv, y, targeted)
        used = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        keep = (loss >= 0).nonzero()[:, 0]
        work = {name: value[keep] for name, value in {**work, "x": x, "y": y, "loss": loss}.items()}
        with progress_bar(queries - 1, "square", progress) as advance:
            for step in range(queries - 1):
                if keep.numel() == 0:
                    break
                area = p_schedule(p_init, step, queries) * height * width
                if norm == "inf":
                    side = min(max(round(math.sqrt(area)), 1), max(min(height, width) - 1, 1))
                    state = _linf_candidate(work, side, sampler)
                    candidate = torch.lerp(work["lower"], work["upper"], state)
                else:
                    side = max(round(math.sqrt(area)), 3)
                    side = min(side + 1 - side % 2, min(height, width))
                    state = candidate = _l2_candidate(work, side, eps, sampler)
                candidate_loss = _margin(model, candidate, work["y"], targeted)
                better = candidate_loss < work["loss"]
                work["state"] = torch.lerp(work["state"], state, better.to(x.dtype).view(-1, 1, 1, 1))
                work["loss"] = torch.where(better, candidate_loss, work["loss"])
                used[keep] += 1
                fooled = work["loss"] < 0
                if bool(fooled.any()):
                    adv[keep[fooled]] = _image(work)[fooled]
                    keep, work = keep[~fooled], {name: value[~fooled] for name, value in work.items()}
                advance(1)
        adv[keep] = _image(work)
    return adv, used


def _entry(norm: str):
    def entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
        goal = labels if target is None else target
        targeted = target is not None
        return square(
            model, x, goal, eps, norm=norm, targeted=targeted, generator=generator, progress=progress, **options
        )

    return entry


ATTACKS.add(
    "square",
    _entry("inf"),
    norm="linf",
    eps=8 / 255,
    threat="black-box",
    wraps=(square,),
    fixed=("norm",),
    quick={"queries": 20},
)
ATTACKS.add(
    "square_l2",
    _entry("2"),
    norm="l2",
    eps=0.5,
    threat="black-box",
    wraps=(square,),
    fixed=("norm",),
    quick={"queries": 20},
)
