"""Square attack, L∞ (Andriushchenko et al. 2020): random search with square updates, score-based.

Only the model's output probabilities are used: the loss is the margin of the log
probabilities, ``log p_y − max_{i≠y} log p_i`` (untargeted; ``max_{i≠t} log p_i − log p_t``
targeted), which equals the paper's logit margin. Start: vertical stripes of ±eps. Each
query changes one random square of side ``round(sqrt(p · H · W))`` to ``x ± eps`` (one
sign per channel) and keeps it if the margin drops; ``p`` follows the paper's schedule
from ``p_init`` (halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10000
queries, rescaled to the budget). All still-unfooled images of a batch are queried
together (one forward pass per iteration); fooled images stop spending queries.
"""

from __future__ import annotations

__all__ = ["square"]

import torch

from ..checks import checks_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import check_eps, labels_for, progress_bar
from .registry import ATTACKS

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@checks_images
def square(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 8 / 255,
    *,
    queries: int = 5000,
    p_init: float = 0.8,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Square attack in the L∞ ball of radius ``eps``.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, 3, H, W) in [0, 1].
        y: true labels (the prediction when None), or target classes when ``targeted``.
        eps: L∞ radius (pixel units); queries: budget per image (5000 as AutoAttack/torchattacks).
        p_init: initial fraction of pixels in the square (0.8 as the paper for L∞).
        generator: random source; progress: progress bar (Ctrl-C returns the best so far).

    Returns:
        ``(x_adv, queries)``: adversarial images and LongTensor[N] of queries used per image.

    >>> x_adv, used = square(model, x, eps=8/255, queries=1000)
    """
    eps = check_eps(eps)
    if queries < 1 or not 0 < p_init <= 1:
        raise ConvscopeError("square needs queries >= 1 and 0 < p_init <= 1")
    x = x.detach()
    count, channels, height, width = x.shape
    device = x.device

    def random(*shape):
        return torch.rand(shape, generator=generator, device=device, dtype=x.dtype)

    with frozen(model), torch.no_grad():
        y = labels_for(model, x, y)

        def margin(images, labels):
            log_p = model(images).log_softmax(dim=-1)
            chosen = log_p.gather(1, labels[:, None])[:, 0]
            other = log_p.scatter(1, labels[:, None], float("-inf")).amax(dim=-1)
            return other - chosen if targeted else chosen - other

        adv = (x + eps * torch.sign(random(count, channels, 1, width) - 0.5)).clamp(0, 1)
        loss = margin(adv, y)
        used = torch.ones(count, dtype=torch.long, device=device)
        rows = torch.arange(height, device=device).view(1, 1, height, 1)
        columns = torch.arange(width, device=device).view(1, 1, 1, width)
        with progress_bar(queries - 1, "square", progress) as advance:
            for step in range(queries - 1):
                active = (loss >= 0).nonzero()[:, 0]
                if active.numel() == 0:
                    break
                fraction = p_init / 2 ** sum(int(step * 10000 / queries) > mark for mark in _SCHEDULE)
                side = min(max(int(round((fraction * height * width) ** 0.5)), 1), height - 1, width - 1)
                top = (random(active.numel()) * (height - side + 1)).long().view(-1, 1, 1, 1)
                left = (random(active.numel()) * (width - side + 1)).long().view(-1, 1, 1, 1)
                window = (rows >= top) & (rows < top + side) & (columns >= left) & (columns < left + side)
                signs = eps * torch.sign(random(active.numel(), channels, 1, 1) - 0.5)
                candidate = torch.where(window, (x[active] + signs).clamp(0, 1), adv[active])
                candidate_loss = margin(candidate, y[active])
                used[active] += 1
                better = candidate_loss < loss[active]
                adv[active[better]] = candidate[better]
                loss[active[better]] = candidate_loss[better]
                advance(1)
    return adv, used


@ATTACKS.register("square", norm="linf", eps=8 / 255, threat="black-box", wraps=(square,), quick={"queries": 20})
def _square_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return square(model, x, goal, eps, targeted=target is not None, generator=generator, progress=progress, **options)
