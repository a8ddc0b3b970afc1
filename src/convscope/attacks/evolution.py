"""Evolutionary black-box attacks: the one-pixel attack (Su et al. 2019) and fooling images (Nguyen 2015).

Both use only the model's output probabilities and evaluate whole populations in batches.
:func:`fooling_images` is described in its docstring; the rest of this note is the one-pixel attack.

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

__all__ = ["fooling_gallery", "fooling_images", "FoolingResult", "one_pixel"]

from dataclasses import dataclass
from typing import Sequence

import torch

from ..checks import checks_images, model_device
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import labels_for, progress_bar
from .registry import ATTACKS


@checks_images
def one_pixel(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    targeted: bool = False,
    pixels: int = 1,
    popsize: int = 400,
    generations: int = 100,
    mutation: float = 0.5,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    progress: bool = False,
    steps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-pixel (or few-pixel) attack by differential evolution.

    Args:
        model: classifier taking RGB in [0, 1]; x: images (N, 3, H, W) in [0, 1].
        y: true labels (the prediction when None), or target classes when ``targeted``.
        pixels: pixels changed per image; popsize: candidates per image; generations: rounds of
            differential evolution (``steps=`` is accepted as the old name).
        mutation: the differential weight F.
        batch_size: candidates per forward pass.
        generator: random source (reproducible runs).
        progress: progress bar (Ctrl-C returns the best candidates so far).

    Returns:
        ``(x_adv, queries)``: the best candidate applied per image, and LongTensor[N] of
        model evaluations spent per image.

    >>> x_adv, queries = one_pixel(model, x, popsize=100, generations=30)
    """
    steps = generations if steps is None else steps  # the old name
    if pixels < 1 or popsize < 4 or steps < 0 or batch_size < 1:
        raise ConvscopeError("one_pixel needs pixels >= 1, popsize >= 4, generations >= 0 and batch_size >= 1")
    x = x.detach()
    count, _, height, width = x.shape
    device = x.device
    with frozen(model):
        y = labels_for(model, x, y)
        scale = torch.tensor([height - 1, width - 1, 1, 1, 1], device=device, dtype=x.dtype)

        def random(*shape):
            return torch.rand(shape, generator=generator, device=device, dtype=x.dtype)

        colour = (
            0.5 + 0.5 * torch.randn((count, popsize, pixels, 3), generator=generator, device=device, dtype=x.dtype)
        ).clamp(0, 1)
        population = torch.cat([random(count, popsize, pixels, 2), colour], dim=-1)  # unit box coordinates
        queries = torch.zeros(count, dtype=torch.long, device=device)
        fitness, fooled = _evaluate(
            model,
            x,
            y,
            targeted,
            population,
            scale,
            torch.ones(count, dtype=torch.bool, device=device),
            batch_size,
            queries,
        )
        with progress_bar(steps, "one-pixel", progress) as advance:
            for _ in range(steps):
                active = ~(fooled.any(dim=1))
                if not active.any():
                    break
                r = _three_others(count, popsize, generator, device)
                pick = lambda index, population=population: population.gather(
                    1, index.view(count, popsize, 1, 1).expand_as(population)
                )  # noqa: E731
                children = (pick(r[0]) + mutation * (pick(r[1]) - pick(r[2]))).clamp(0, 1)
                child_fitness, child_fooled = _evaluate(
                    model, x, y, targeted, children, scale, active, batch_size, queries
                )
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
            o, m = owner[start : start + batch_size], member[start : start + batch_size]
            probabilities = model(_apply(x[o], population[o, m], scale)).softmax(dim=-1)
            p = probabilities.gather(1, y[o, None])[:, 0]
            fitness[o, m] = -p if targeted else p
            predicted = probabilities.argmax(dim=-1)
            fooled[o, m] = predicted == y[o] if targeted else predicted != y[o]
    queries += active.long() * popsize
    return fitness, fooled


@ATTACKS.register(
    "one_pixel",
    norm="l0",
    uses_eps=False,
    threat="black-box",
    wraps=(one_pixel,),
    quick={"popsize": 8, "generations": 3},
)
def _one_pixel_entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
    goal = labels if target is None else target
    return one_pixel(model, x, goal, targeted=target is not None, generator=generator, progress=progress, **options)


@dataclass
class FoolingResult:
    """Evolved fooling images: ``images`` (K, 3, S, S) in [0, 1], one per class of ``classes``;
    ``confidence`` Tensor[K] the model's probability of that class; ``generations`` and
    ``queries`` LongTensor[K] spent; ``history`` best confidence per generation (G, K);
    ``encoding`` the genome that made them (``"cppn"`` or ``"direct"``)."""

    classes: torch.Tensor
    images: torch.Tensor
    confidence: torch.Tensor
    generations: torch.Tensor
    queries: torch.Tensor
    history: torch.Tensor
    encoding: str = "cppn"


#: how the figure names each genome encoding.
_ENCODING_NAMES = {"cppn": "CPPN", "direct": "direct-pixel"}

_CPPN_FUNCTIONS = (torch.sin, lambda t: torch.exp(-t * t), torch.tanh, torch.sigmoid)


def _cppn_render(genome: list[torch.Tensor], size: int) -> torch.Tensor:
    """A fixed-topology CPPN: inputs (x, y, r, 1) per pixel, hidden layers mixing sin, Gaussian,
    tanh and sigmoid units, a sigmoid RGB output. ``genome``: weights (B, in, out) per layer."""
    device, dtype = genome[0].device, genome[0].dtype
    axis = torch.linspace(-1, 1, size, device=device, dtype=dtype)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    hidden = torch.stack([xs, ys, (xs**2 + ys**2).sqrt(), torch.ones_like(xs)], -1).view(1, -1, 4)
    for index, weights in enumerate(genome):
        hidden = hidden @ weights
        if index < len(genome) - 1:
            part = hidden.shape[-1] // len(_CPPN_FUNCTIONS)
            hidden = torch.cat([f(hidden[..., j * part : (j + 1) * part]) for j, f in enumerate(_CPPN_FUNCTIONS)], -1)
    return torch.sigmoid(hidden).view(-1, size, size, 3).permute(0, 3, 1, 2)


def fooling_images(
    model: torch.nn.Module,
    classes: Sequence[int] | torch.Tensor,
    *,
    encoding: str = "cppn",
    size: int = 64,
    popsize: int = 32,
    elite: int | None = None,
    generations: int = 200,
    threshold: float = 0.99,
    mutation: float = 0.1,
    hidden: int = 16,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> FoolingResult:
    """Images unrecognisable to people that the model labels with high confidence (Nguyen 2015).

    One evolving population per class, all evaluated together (score-based: only output
    probabilities are used). Each generation keeps the ``elite`` fittest genomes (fitness:
    the probability of the class) and fills the population with mutated copies of them;
    a class stops once its best image reaches ``threshold``. ``elite`` defaults to a quarter
    of ``popsize``.

    Encodings: ``"direct"`` (genome = the pixels, started from uniform noise, mutation adds
    N(0, ``mutation``) to 10 % of the values) and ``"cppn"`` (genome = the weights of a
    compositional pattern-producing network, mutation adds ``mutation`` × the weights' std
    of Gaussian noise), which gives the regular, repeating patterns of the paper.

    Deviations from the paper: an elitist genetic algorithm per class instead of MAP-Elites
    over all classes, Gaussian rather than polynomial mutation, and a CPPN of fixed topology
    (weights evolve, no NEAT structure growth); images at ``size`` px (the embedded model
    pools globally, and 64 px keeps a gallery to seconds per class on a CPU).

    >>> result = fooling_images(model, [949], generations=100)   # a "strawberry"
    """
    if encoding not in ("cppn", "direct"):
        raise ConvscopeError(f"encoding must be 'cppn' or 'direct', got {encoding!r}")
    elite = max(1, popsize // 4) if elite is None else elite
    if not 1 <= elite < popsize or generations < 1:
        raise ConvscopeError("fooling_images needs 1 <= elite < popsize and generations >= 1")
    device = torch.device(device) if device is not None else model_device(model)
    classes = torch.as_tensor(classes, dtype=torch.long, device=device).reshape(-1)
    count = classes.numel()
    shapes = [(4, hidden), (hidden, hidden), (hidden, hidden), (hidden, 3)]

    def normal(*shape):
        return torch.randn(shape, generator=generator, device=device)

    if encoding == "cppn":
        genome = [normal(count, popsize, a, b) * (2 / a**0.5) for a, b in shapes]
    else:
        genome = [torch.rand((count, popsize, 3, size, size), generator=generator, device=device)]

    def render(parts: list[torch.Tensor]) -> torch.Tensor:  # (K, P, ...) -> (K*P, 3, S, S)
        flat = [p.reshape(-1, *p.shape[2:]) for p in parts]
        return _cppn_render(flat, size) if encoding == "cppn" else flat[0]

    done = torch.zeros(count, dtype=torch.bool, device=device)
    spent = torch.zeros(count, dtype=torch.long, device=device)
    used = torch.zeros(count, dtype=torch.long, device=device)
    history = []
    with frozen(model), torch.no_grad(), progress_bar(generations, f"fooling ({encoding})", progress) as advance:
        for generation in range(generations):
            images = render(genome)
            fitness = torch.cat([model(chunk).softmax(dim=-1) for chunk in images.split(batch_size)])
            outside = classes[(classes < 0) | (classes >= fitness.shape[-1])]
            if outside.numel():
                raise ConvscopeError(
                    f"class {int(outside[0])} is out of range: the model has {fitness.shape[-1]} classes "
                    f"(0..{fitness.shape[-1] - 1})"
                )
            fitness = fitness.view(count, popsize, -1).gather(2, classes.view(-1, 1, 1).expand(-1, popsize, 1))[..., 0]
            spent += (~done).long() * popsize
            used += (~done).long()
            order = fitness.argsort(dim=1, descending=True)
            history.append(fitness.gather(1, order[:, :1])[:, 0])
            done |= history[-1] >= threshold
            if done.all() or generation == generations - 1:
                break
            parents = torch.randint(elite, (count, popsize - elite), generator=generator, device=device)
            new = []
            for part in genome:
                view = (-1, popsize) + (1,) * (part.dim() - 2)
                best = part.gather(
                    1, order[:, :elite].reshape(-1, elite, *([1] * (part.dim() - 2))).expand(-1, -1, *part.shape[2:])
                )
                children = best.gather(
                    1, parents.reshape(count, -1, *([1] * (part.dim() - 2))).expand(-1, -1, *part.shape[2:])
                )
                if encoding == "cppn":
                    children = children + mutation * part.std() * normal(*children.shape)
                else:
                    mask = torch.rand(children.shape, generator=generator, device=device) < 0.1
                    children = (children + mask * mutation * normal(*children.shape)).clamp(0, 1)
                evolved = torch.cat([best, children], dim=1)
                new.append(torch.where(done.view(view[:1] + (1,) * (part.dim() - 1)), part, evolved))
            genome = new
            advance(1)
        images = render(genome).view(count, popsize, 3, size, size)
        fitness = torch.cat([model(chunk).softmax(dim=-1) for chunk in images.flatten(0, 1).split(batch_size)])
        fitness = fitness.view(count, popsize, -1).gather(2, classes.view(-1, 1, 1).expand(-1, popsize, 1))[..., 0]
        best = fitness.argmax(dim=1)
    pick = torch.arange(count, device=device)
    return FoolingResult(classes, images[pick, best], fitness[pick, best], used, spent, torch.stack(history), encoding)


def fooling_gallery(model: torch.nn.Module, result: FoolingResult, path=None):
    """A figure of the fooling images, each titled with the model's class name and confidence."""
    from ..render import Panel, figure

    names = getattr(model, "labels", None)
    panels = [
        Panel(image.cpu(), f"{names[int(c)] if names else int(c)} ({int(c)})\np = {float(p):.3f}")
        for image, c, p in zip(result.images, result.classes, result.confidence)
    ]
    generations = int(result.generations.max()) if len(result.generations) else 0
    title = (
        f"{getattr(model, 'name', type(model).__name__)}: fooling images "
        f"({_ENCODING_NAMES.get(result.encoding, result.encoding)} evolution, Nguyen 2015), {generations} generations, "
        f"{int(result.queries.max()) if len(result.queries) else 0} queries per class"
    )
    return figure(panels, path, columns=min(len(panels), 5), panel_size=2.4, suptitle=title)
