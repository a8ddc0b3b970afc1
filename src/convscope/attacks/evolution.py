"""The one-pixel attack (Su et al. 2019): differential evolution on a few pixels, black-box.

Only the model's output probabilities are used. A candidate is ``pixels`` tuples
``(row, column, r, g, b)``; the population of every image evolves at once and all
candidates of a generation are evaluated in batches of ``batch_size`` under
``torch.no_grad`` (so the query throughput is that of plain forward passes).

As the paper: DE/rand/1 with F = 0.5 and no crossover, a child replaces its parent when
it is fitter, initial positions uniform and colours ~ N(0.5, 0.5) (the paper's
N(128, 127) in [0, 1]), fitness p(true class) to minimise (untargeted) or p(target) to
maximise (targeted), early stop per image once it is fooled. The paper's ImageNet setting
is a population of 400 and 100 generations (the defaults); torchattacks' ``OnePixel``
calls scipy's best1bin per image instead (popsize 10 × 5 dimensions, 10 steps).
"""

from __future__ import annotations

import torch

from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import labels_for, progress_bar
from .registry import ATTACKS


def one_pixel(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, targeted: bool = False,
              pixels: int = 1, popsize: int = 400, steps: int = 100, mutation: float = 0.5,
              batch_size: int = 256, generator: torch.Generator | None = None,
              progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One-pixel (or few-pixel) attack by differential evolution.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, 3, H, W) in [0, 1].
        y: true labels (the prediction when None), or target classes when ``targeted``.
        pixels: pixels changed per image; popsize: candidates per image; steps: generations.
        mutation: the differential weight F.
        batch_size: candidates per forward pass.
        generator: random source (reproducible runs).
        progress: progress bar (Ctrl-C returns the best candidates so far).

    Returns:
        ``(x_adv, queries)``: the best candidate applied per image, and LongTensor[N] of
        model evaluations spent per image.

    >>> x_adv, queries = one_pixel(model, x, popsize=100, steps=30)
    """
    if pixels < 1 or popsize < 4 or steps < 0 or batch_size < 1:
        raise ConvscopeError("one_pixel needs pixels >= 1, popsize >= 4, steps >= 0 and batch_size >= 1")
    x = x.detach()
    count, _, height, width = x.shape
    device = x.device
    with frozen(model):
        y = labels_for(model, x, y)
        scale = torch.tensor([height - 1, width - 1, 1, 1, 1], device=device, dtype=x.dtype)

        def random(*shape):
            return torch.rand(shape, generator=generator, device=device, dtype=x.dtype)

        colour = (0.5 + 0.5 * torch.randn((count, popsize, pixels, 3), generator=generator, device=device,
                                         dtype=x.dtype)).clamp(0, 1)
        population = torch.cat([random(count, popsize, pixels, 2), colour], dim=-1)  # unit box coordinates
        queries = torch.zeros(count, dtype=torch.long, device=device)
        fitness, fooled = _evaluate(model, x, y, targeted, population, scale, torch.ones(count, dtype=torch.bool,
                                    device=device), batch_size, queries)
        with progress_bar(steps, "one-pixel", progress) as advance:
            for _ in range(steps):
                active = ~(fooled.any(dim=1))
                if not active.any():
                    break
                r = _three_others(count, popsize, generator, device)
                pick = lambda index: population.gather(1, index.view(count, popsize, 1, 1).expand_as(population))  # noqa: E731
                children = (pick(r[0]) + mutation * (pick(r[1]) - pick(r[2]))).clamp(0, 1)
                child_fitness, child_fooled = _evaluate(model, x, y, targeted, children, scale, active, batch_size,
                                                        queries)
                better = (child_fitness < fitness) & active[:, None]
                population = torch.where(better[..., None, None], children, population)
                fitness = torch.where(better, child_fitness, fitness)
                fooled = torch.where(better, child_fooled, fooled)
                advance(1)
    # prefer a fooling candidate, else the fittest one
    best = (fitness - 2 * fooled.float()).argmin(dim=1)
    chosen = population[torch.arange(count, device=device), best]
    return _apply(x, chosen, scale), queries


def _three_others(count: int, popsize: int, generator, device) -> torch.Tensor:
    """Indices r1, r2, r3 (3, N, P), distinct from each other and from the parent index."""
    keys = torch.rand((count, popsize, popsize), generator=generator, device=device)
    keys[:, torch.arange(popsize), torch.arange(popsize)] = 2.0  # never the parent itself
    return keys.topk(3, dim=-1, largest=False).indices.permute(2, 0, 1)


def _apply(images: torch.Tensor, candidates: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Paint candidates (B, pixels, 5) in unit coordinates onto copies of ``images`` (B, 3, H, W)."""
    values = candidates * scale
    rows, columns = values[..., 0].round().long(), values[..., 1].round().long()
    out = images.clone()
    batch = torch.arange(images.shape[0], device=images.device)
    for k in range(candidates.shape[1]):
        out[batch, :, rows[:, k], columns[:, k]] = values[:, k, 2:]
    return out


def _evaluate(model, x, y, targeted, population, scale, active, batch_size, queries):
    """Fitness (lower is better) and success of every candidate of the active images."""
    count, popsize = population.shape[:2]
    fitness = torch.full((count, popsize), float("inf"), device=x.device)
    fooled = torch.zeros((count, popsize), dtype=torch.bool, device=x.device)
    images = active.nonzero()[:, 0]
    owner = images.repeat_interleave(popsize)
    member = torch.arange(popsize, device=x.device).repeat(images.numel())
    with torch.no_grad():
        for start in range(0, owner.numel(), batch_size):
            o, m = owner[start:start + batch_size], member[start:start + batch_size]
            probabilities = model(_apply(x[o], population[o, m], scale)).softmax(dim=-1)
            p = probabilities.gather(1, y[o, None])[:, 0]
            fitness[o, m] = -p if targeted else p
            predicted = probabilities.argmax(dim=-1)
            fooled[o, m] = predicted == y[o] if targeted else predicted != y[o]
    queries += active.long() * popsize
    return fitness, fooled


@ATTACKS.register("one-pixel")
def _one_pixel_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return one_pixel(model, x, goal, targeted=target is not None, generator=generator, progress=progress, **options)
