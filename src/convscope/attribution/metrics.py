"""Metrics of explanation quality, in the families Quantus (Hedström et al. 2023) defines,
batched in torch: one function per metric, registered in :data:`METRICS` with its facts.

Every metric is ``metric(model, x, heat, target, *, explain, masks, seed, **options) ->
Tensor[N]`` (one score per image; NaN where it is undefined). ``heat`` is the map of the
method being scored (N, 1|3, h, w), reduced over channels by a signed sum and upsampled
bilinearly to the image; ``explain(x, target)`` recomputes the method (robustness and
randomisation metrics); ``masks`` (N, H, W) bool marks the object (localisation metrics).
The registry's ``calls`` says how many model passes a metric makes per image, every pass
counted (the clean image's class included): a Python expression of the metric's options,
``explanation`` (the passes of one explanation per image: what the method costs) and ``groups``
(the layer groups MPRT randomises); ``tests/test_attribution_metrics.py`` counts the passes with
a forward hook and checks them against it. ``higher_better`` says which way is good.

**All-zero maps** (Grad-CAM killed by its ReLU, a dead rectifier path) carry no ranking and
no mass: every metric returns NaN for them (Quantus refuses them), and
:func:`evaluate_explanations` counts them in the table instead of averaging them in.

Conventions (= Quantus 0.6 defaults unless said): faithfulness metrics perturb whole pixels
(all three channels; Quantus perturbs channel values of a broadcast map) with black
(0 in [0, 1]); robustness noise is drawn in pixel space [0, 1] and clamped to it.
"""

from __future__ import annotations

__all__ = [
    "complexity",
    "deletion",
    "faithfulness_correlation",
    "flat_map",
    "insertion",
    "local_lipschitz",
    "max_sensitivity",
    "METRICS",
    "mprt",
    "noisy_linear_imputation",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "relevance_mass",
    "ROAD_FRACTIONS",
    "road_lerf",
    "road_morf",
    "sparseness",
    "subset_indices",
]

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConvscopeError
from ..hooks import frozen
from ..registry import Registry

METRICS: Registry[Callable[..., torch.Tensor]] = Registry(
    "explanation metric", family="faithfulness", higher_better=True, stochastic=False, calls="0", needs=(), unit=""
)
"""name -> metric; metadata: ``family``, ``higher_better``, ``stochastic``, ``calls`` (model passes per
image, an expression of the options, ``explanation`` and ``groups``), ``needs`` (``"explain"`` and/or
``"masks"``), ``unit`` (what the score measures, for axes)."""


def flat_map(heat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, H*W) float: signed sum over channels, bilinear to ``size``."""
    heat = heat.detach().float()
    if heat.shape[1] != 1:
        heat = heat.sum(dim=1, keepdim=True)
    if tuple(heat.shape[-2:]) != tuple(size):
        heat = F.interpolate(heat, size=size, mode="bilinear", align_corners=False)
    return heat.flatten(1)


def _zero(values: torch.Tensor) -> torch.Tensor:
    """(N,) True where a map is all zero."""
    return (values == 0).all(dim=1)


def _nan_where(scores: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    scores = scores.double().cpu()
    scores[dead.cpu()] = float("nan")
    return scores


def _normalise_by_max(values: torch.Tensor) -> torch.Tensor:
    top = values.abs().amax(dim=1, keepdim=True)
    return torch.where(top > 0, values / top.clamp(min=1e-30), values)


def _class_target(target) -> None:
    if callable(target) and not isinstance(target, torch.Tensor):
        raise ConvscopeError("explanation metrics need class targets, not a callable")


def _class_ids(model, x, target, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Class ids of the clean images, from their ``logits`` when given, else from one pass."""
    from ..targets import resolve_target

    _class_target(target)
    if logits is None:
        logits = _forward(model, x, len(x))
    return resolve_target(target, logits, getattr(model, "labels", None)).to(x.device)


def _forward(model, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    with frozen(model), torch.no_grad():
        return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def _with_clean(model, x, target, perturbed: torch.Tensor, batch_size: int):
    """(class ids, clean logits, perturbed logits): the clean images go through the model in the
    same batched stream as their perturbed copies, so the target costs no pass of its own."""
    logits = _forward(model, torch.cat([x, perturbed]), batch_size)
    clean = logits[: len(x)]
    return _class_ids(model, x, target, clean), clean, logits[len(x) :]


# ---------------------------------------------------------------------------------------------- complexity
@METRICS.register(family="complexity", higher_better=True, calls="0", unit="Gini index of |map| (0-1)")
def sparseness(model, x, heat, target=None, **_) -> torch.Tensor:
    """Sparseness (Chalasani et al. 2020): the Gini index of |map| scaled by its maximum (+1e-7,
    as Quantus); 1 = all relevance on one pixel, 0 = uniform. No model call."""
    values = flat_map(heat, x.shape[-2:]).double()
    dead = _zero(values)
    a = _normalise_by_max(values.abs()) + 1e-7
    a, _ = a.sort(dim=1)
    count = a.shape[1]
    rank = torch.arange(1, count + 1, dtype=a.dtype, device=a.device)
    gini = ((2 * rank - count - 1) * a).sum(dim=1) / (count * a.sum(dim=1))
    return _nan_where(gini, dead)


@METRICS.register(family="complexity", higher_better=False, calls="0", unit="entropy of |map| (nats)")
def complexity(model, x, heat, target=None, **_) -> torch.Tensor:
    """Entropy complexity (Bhatt et al. 2020): Shannon entropy (nats) of |map| / sum |map|; lower is
    simpler. No model call."""
    values = flat_map(heat, x.shape[-2:]).double()
    dead = _zero(values)
    share = values.abs() / values.abs().sum(dim=1, keepdim=True).clamp(min=1e-30)
    return _nan_where(-(share * torch.log(share + 1e-12)).sum(dim=1), dead)


# -------------------------------------------------------------------------------------------- localisation
def _masks(masks, x) -> torch.Tensor:
    if masks is None:
        raise ConvscopeError("localisation metrics need masks (generated scenes or --masks)")
    masks = torch.as_tensor(masks).to(x.device).bool()
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.shape[0] != x.shape[0] or tuple(masks.shape[-2:]) != tuple(x.shape[-2:]):
        raise ConvscopeError(f"masks of shape {tuple(masks.shape)} for images {tuple(x.shape)}")
    return masks.flatten(1)


@METRICS.register(
    family="localisation", higher_better=True, calls="0", needs=("masks",), unit="share of images hit (0-1)"
)
def pointing_game(model, x, heat, target=None, masks=None, **_) -> torch.Tensor:
    """Pointing game (Zhang et al. 2018): 1 if a maximum of the (signed) map lies in the object mask.
    NaN for an empty mask. No model call."""
    values, inside = flat_map(heat, x.shape[-2:]), _masks(masks, x)
    top = values == values.amax(dim=1, keepdim=True)
    hit = (top & inside).any(dim=1).double()
    return _nan_where(hit, _zero(values) | ~inside.any(dim=1))


@METRICS.register(
    family="localisation", higher_better=True, calls="0", needs=("masks",), unit="share of the map's sum in the mask"
)
def relevance_mass(model, x, heat, target=None, masks=None, **_) -> torch.Tensor:
    """Relevance mass accuracy (Arras et al. 2022): share of the (signed) map's sum inside the mask.
    NaN for an empty mask. No model call."""
    values, inside = flat_map(heat, x.shape[-2:]).double(), _masks(masks, x)
    share = (values * inside).sum(dim=1) / values.sum(dim=1)
    return _nan_where(share, _zero(values) | ~inside.any(dim=1) | (values.sum(dim=1) == 0))


# -------------------------------------------------------------------------------------------- faithfulness
@METRICS.register(family="faithfulness", higher_better=False, calls="steps + 1", unit="AUC of p(target) (0-1)")
def pixel_flipping(model, x, heat, target=None, steps: int = 16, batch_size: int = 64, **_) -> torch.Tensor:
    """Pixel flipping (Bach et al. 2015): set the pixels to black in order of the map, HW/steps at a
    time, and take the area under the target's softmax probability after each step (trapezoid,
    x from 1/steps to 1; Quantus' AUC divided by ``steps``). Lower is better. ``steps + 1`` calls
    (the clean image, for its class, in the same batches as the flipped copies)."""
    values = flat_map(heat, x.shape[-2:])
    count, pixels = values.shape
    order = values.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=x.device).expand(count, -1))
    per_step = math.ceil(pixels / steps)
    chosen = torch.arange(1, steps + 1, device=x.device) * per_step
    keep = (rank[:, None, :] >= chosen[None, :, None]).view(count * steps, 1, *x.shape[-2:]).to(x.dtype)
    ids, _, logits = _with_clean(model, x, target, x.repeat_interleave(steps, dim=0).mul_(keep), batch_size)
    probabilities = logits.softmax(dim=-1)
    curve = probabilities.gather(1, ids.repeat_interleave(steps)[:, None]).view(count, steps).double().cpu()
    return _nan_where(torch.trapezoid(curve, dx=1.0 / steps, dim=1), _zero(values))


@METRICS.register(family="faithfulness", higher_better=False, calls="steps + 2", unit="AUC of p(target) (0-1)")
def deletion(model, x, heat, target=None, steps: int = 16, **_) -> torch.Tensor:
    """Deletion AUC (Petsiuk 2018; :func:`~convscope.attribution.evaluate.deletion`). Lower is better.
    ``steps + 2`` calls: the class of the clean image, and the ``steps + 1`` points of the curve."""
    from .evaluate import deletion as curve

    values = flat_map(heat, x.shape[-2:])
    _class_target(target)
    return _nan_where(curve(model, x, heat, target, steps=steps).auc, _zero(values))


@METRICS.register(family="faithfulness", higher_better=True, calls="steps + 2", unit="AUC of p(target) (0-1)")
def insertion(model, x, heat, target=None, steps: int = 16, **_) -> torch.Tensor:
    """Insertion AUC (Petsiuk 2018; :func:`~convscope.attribution.evaluate.insertion`). Higher is better.
    ``steps + 2`` calls, as :func:`deletion`."""
    from .evaluate import insertion as curve

    values = flat_map(heat, x.shape[-2:])
    _class_target(target)
    return _nan_where(curve(model, x, heat, target, steps=steps).auc, _zero(values))


def subset_indices(count: int, pixels: int, runs: int, subset: int, seed: int) -> np.ndarray:
    """(runs, count, subset) random pixel subsets, drawn as Quantus draws them (per run, per image,
    ``RandomState.choice(pixels, subset, replace=False)``), so a seeded Quantus run sees the same."""
    state = np.random.RandomState(seed)
    return np.stack(
        [np.stack([state.choice(pixels, subset, replace=False) for _ in range(count)]) for _ in range(runs)]
    )


@METRICS.register(
    family="faithfulness", higher_better=True, stochastic=True, calls="runs + 1", unit="Pearson r (-1 to 1)"
)
def faithfulness_correlation(
    model, x, heat, target=None, runs: int = 64, subset: int = 224, seed: int = 0, batch_size: int = 64, **_
) -> torch.Tensor:
    """Faithfulness correlation (Bhatt et al. 2020): Pearson correlation, over ``runs`` random subsets of
    ``subset`` pixels set to black, between the map's sum on the subset and the drop of the target
    logit. Higher is better. ``runs + 1`` calls."""
    values = flat_map(heat, x.shape[-2:])
    count, pixels = values.shape
    chosen = torch.from_numpy(subset_indices(count, pixels, runs, subset, seed)).to(x.device)  # (runs, N, s)
    keep = torch.ones(runs, count, pixels, device=x.device, dtype=x.dtype)
    keep.scatter_(2, chosen, 0.0)
    images = (x[None] * keep.view(runs, count, 1, *x.shape[-2:])).flatten(0, 1)
    ids, clean, perturbed = _with_clean(model, x, target, images, batch_size)
    logits = torch.cat([clean, perturbed])
    score = logits.gather(1, ids.repeat(runs + 1)[:, None])[:, 0].view(runs + 1, count).double().cpu()
    drops = (score[0][None] - score[1:]).T  # (N, runs)
    sums = values.double().cpu()[torch.arange(count)[None, :, None], chosen.cpu()].sum(dim=2).T
    return _nan_where(_pearson(sums, drops), _zero(values))


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


def noisy_linear_imputation(image: torch.Tensor, removed: torch.Tensor, noise: float, generator) -> torch.Tensor:
    """ROAD's imputation (Rong et al. 2022): every removed pixel is the weighted mean of its 8
    neighbours (1/6 direct, 1/12 diagonal, renormalised at the border), solved as one sparse linear
    system per image (scipy), plus Gaussian noise of std ``noise`` on the imputed pixels."""
    return _jitter(*_linear_imputation(image, removed), noise, generator)


def _linear_imputation(image: torch.Tensor, removed: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """The noise-free part of :func:`noisy_linear_imputation`: (the filled image, the removed pixels'
    flat indices). Its sparse solve (SuperLU) releases the GIL, so threads run several at once."""
    import scipy.sparse
    import scipy.sparse.linalg

    channels, height, width = image.shape
    flat = removed.flatten().cpu().numpy()
    unknown = np.flatnonzero(flat)
    if unknown.size == 0:
        return image, unknown
    position = -np.ones(height * width, dtype=np.int64)
    position[unknown] = np.arange(unknown.size)
    rows, cols = np.divmod(unknown, width)
    offsets = [
        (-1, 0, 1 / 6),
        (1, 0, 1 / 6),
        (0, -1, 1 / 6),
        (0, 1, 1 / 6),
        (-1, -1, 1 / 12),
        (-1, 1, 1 / 12),
        (1, -1, 1 / 12),
        (1, 1, 1 / 12),
    ]
    pixels = image.reshape(channels, -1).double().cpu().numpy()
    total = np.zeros(unknown.size)
    entries_r, entries_c, entries_v = [np.arange(unknown.size)], [np.arange(unknown.size)], []
    right = np.zeros((unknown.size, channels))
    neighbours = []
    for dr, dc, weight in offsets:
        r, c = rows + dr, cols + dc
        valid = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        total += weight * valid
        neighbours.append((r, c, weight, valid))
    entries_v.append(np.ones(unknown.size))
    for r, c, weight, valid in neighbours:
        index = np.where(valid, r * width + c, 0)
        share = weight * valid / total
        known = valid & (position[index] < 0)
        right[known] += share[known, None] * pixels[:, index[known]].T
        hidden = valid & (position[index] >= 0)
        entries_r.append(np.flatnonzero(hidden))
        entries_c.append(position[index[hidden]])
        entries_v.append(-share[hidden])
    matrix = scipy.sparse.csc_matrix(
        (np.concatenate(entries_v), (np.concatenate(entries_r), np.concatenate(entries_c))),
        shape=(unknown.size, unknown.size),
    )
    solved = scipy.sparse.linalg.spsolve(matrix, right)
    solved = np.asarray(solved).reshape(unknown.size, channels)
    out = pixels.copy()
    out[:, unknown] = solved.T
    return torch.from_numpy(out).to(image).reshape(channels, height, width), unknown


def _jitter(filled: torch.Tensor, unknown: np.ndarray, noise: float, generator) -> torch.Tensor:
    """ROAD's Gaussian noise of std ``noise`` on the imputed pixels, then the clip to [0, 1]."""
    if unknown.size == 0:
        return filled
    channels = filled.shape[0]
    jitter = torch.randn(channels, unknown.size, generator=generator, dtype=torch.float64).to(filled) * noise
    filled.view(channels, -1)[:, torch.from_numpy(unknown).to(filled.device)] += jitter
    return filled.clamp(0, 1)


def _road(model, x, heat, target, order: str, fractions, noise: float, seed: int, batch_size: int) -> torch.Tensor:
    values = flat_map(heat, x.shape[-2:])
    generator = torch.Generator().manual_seed(seed)
    ranking = values.argsort(dim=1, descending=(order == "morf"), stable=True)
    removals = []
    for index in range(x.shape[0]):
        for fraction in fractions:
            removed = torch.zeros(values.shape[1], dtype=torch.bool, device=x.device)
            removed[ranking[index, : int(values.shape[1] * fraction)]] = True
            removals.append((x[index], removed.view(x.shape[-2:])))
    # the solves, ~90 % of ROAD's time, run on as many threads as torch has; the noise is then drawn
    # in image and fraction order, so the result does not depend on the thread count
    with ThreadPoolExecutor(torch.get_num_threads()) as pool:
        solved = list(pool.map(lambda removal: _linear_imputation(*removal), removals))
    images = [_jitter(filled, unknown, noise, generator) for filled, unknown in solved]
    ids, _, logits = _with_clean(model, x, target, torch.stack(images), batch_size)
    predicted = logits.argmax(dim=-1).view(x.shape[0], len(fractions))
    kept = (predicted == ids[:, None]).double().mean(dim=1)
    return _nan_where(kept, _zero(values))


ROAD_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


@METRICS.register(
    family="faithfulness",
    higher_better=False,
    stochastic=True,
    calls="len(fractions) + 1",
    unit="share of fractions still predicted (0-1)",
)
def road_morf(
    model, x, heat, target=None, fractions=ROAD_FRACTIONS, noise: float = 0.01, seed: int = 0, batch_size: int = 64, **_
) -> torch.Tensor:
    """ROAD, most relevant first (Rong et al. 2022): share of the ``fractions`` at which the model still
    predicts the target after removing that fraction of the most relevant pixels by noisy linear
    imputation. Lower is better. One call per fraction, and the clean image in the same batches."""
    return _road(model, x, heat, target, "morf", fractions, noise, seed, batch_size)


@METRICS.register(
    family="faithfulness",
    higher_better=True,
    stochastic=True,
    calls="len(fractions) + 1",
    unit="share of fractions still predicted (0-1)",
)
def road_lerf(
    model, x, heat, target=None, fractions=ROAD_FRACTIONS, noise: float = 0.01, seed: int = 0, batch_size: int = 64, **_
) -> torch.Tensor:
    """ROAD, least relevant first: as :func:`road_morf` removing the least relevant pixels. Higher is
    better. One call per fraction and the clean image."""
    return _road(model, x, heat, target, "lerf", fractions, noise, seed, batch_size)


# ---------------------------------------------------------------------------------------------- robustness
def _need(explain):
    if explain is None:
        raise ConvscopeError("this metric recomputes the explanation: pass explain=(x, target) -> map")
    return explain


@METRICS.register(
    family="robustness",
    higher_better=False,
    stochastic=True,
    calls="1 + samples * explanation",
    needs=("explain",),
    unit="max relative L2 change of the map",
)
def max_sensitivity(
    model, x, heat, target=None, explain=None, samples: int = 8, radius: float = 0.02, seed: int = 0, **_
) -> torch.Tensor:
    """Max-sensitivity (Yeh et al. 2019): ``max_k ||map(x + u_k) - map(x)|| / ||map(x)||`` (Frobenius)
    over ``samples`` uniform perturbations ``u_k`` in [-radius, radius] (clamped to [0, 1]). Lower is
    better. ``samples`` explanations, batched."""
    explain = _need(explain)
    values = flat_map(heat, x.shape[-2:])
    ids = _class_ids(model, x, target)
    generator = torch.Generator().manual_seed(seed)
    noise = (torch.rand(samples, *x.shape, generator=generator) * 2 - 1).to(x) * radius
    noisy = (x[None] + noise).clamp(0, 1).flatten(0, 1)
    other = flat_map(explain(noisy, ids.repeat(samples)), x.shape[-2:]).view(samples, *values.shape)
    change = (other - values[None]).norm(dim=2) / values.norm(dim=1)[None]
    return _nan_where(change.amax(dim=0), _zero(values))


@METRICS.register(
    family="robustness",
    higher_better=False,
    stochastic=True,
    calls="1 + samples * explanation",
    needs=("explain",),
    unit="max map change / input change (L2)",
)
def local_lipschitz(
    model, x, heat, target=None, explain=None, samples: int = 8, std: float = 0.02, seed: int = 0, **_
) -> torch.Tensor:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018): ``max_k ||m(x_k) - m(x)|| / ||x_k - x||``
    over ``samples`` Gaussian perturbations of std ``std``, maps scaled by their max |value| (Quantus'
    normalisation). Lower is better. ``samples`` explanations, batched."""
    explain = _need(explain)
    values = flat_map(heat, x.shape[-2:])
    ids = _class_ids(model, x, target)
    generator = torch.Generator().manual_seed(seed)
    noisy = (x[None] + torch.randn(samples, *x.shape, generator=generator).to(x) * std).clamp(0, 1)
    other = flat_map(explain(noisy.flatten(0, 1), ids.repeat(samples)), x.shape[-2:]).view(samples, *values.shape)
    scaled, other = _normalise_by_max(values), _normalise_by_max(other.flatten(0, 1)).view_as(other)
    ratio = (other - scaled[None]).norm(dim=2) / (noisy - x[None]).flatten(2).norm(dim=2)
    return _nan_where(ratio.amax(dim=0), _zero(values))


# ------------------------------------------------------------------------------------------- randomisation
@METRICS.register(
    family="randomisation",
    higher_better=False,
    stochastic=True,
    calls="1 + explanation",
    needs=("explain",),
    unit="SSIM to a random class's map (-1 to 1)",
)
def random_logit(model, x, heat, target=None, explain=None, seed: int = 0, **_) -> torch.Tensor:
    """Random logit test (Sixt et al. 2020): SSIM between the map of the target and the map of a
    random other class (both scaled by max |value|, SSIM on their common range). A method that
    explains the class should give a different map: lower is better. One explanation."""
    from skimage.metrics import structural_similarity

    explain = _need(explain)
    values = flat_map(heat, x.shape[-2:])
    logits = _forward(model, x, len(x))
    ids, classes = _class_ids(model, x, target, logits), logits.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    offset = torch.randint(1, classes, (x.shape[0],), generator=generator).to(ids.device)
    other_ids = (ids + offset) % classes
    other = flat_map(explain(x, other_ids), x.shape[-2:])
    first = _normalise_by_max(values).view(-1, *x.shape[-2:]).double().cpu().numpy()
    second = _normalise_by_max(other).view(-1, *x.shape[-2:]).double().cpu().numpy()
    scores = []
    for a, b in zip(first, second):
        span = max(a.max(), b.max()) - min(a.min(), b.min())
        scores.append(structural_similarity(a, b, data_range=span) if span > 0 else float("nan"))
    return _nan_where(torch.tensor(scores, dtype=torch.float64), _zero(values) | _zero(other))


@METRICS.register(
    family="randomisation",
    higher_better=False,
    stochastic=True,
    calls="2 + (groups + 1) * explanation",
    needs=("method",),
    unit="Spearman rho after randomisation (-1 to 1)",
)
def mprt(
    model, x, heat, target=None, method: str | None = None, options: dict | None = None, seed: int = 0, **_
) -> torch.Tensor:
    """Model-parameter randomisation (Adebayo et al. 2018, cascading; :mod:`~convscope.attribution.sanity`):
    Spearman correlation of |map| with the map after the whole network is randomised top-down. Near 0
    passes the test; lower is better. The original and one explanation per layer group, and two passes
    for the class (here and in the sanity check)."""
    from .sanity import sanity_check

    if method is None:
        raise ConvscopeError("mprt needs the method's name")
    values = flat_map(heat, x.shape[-2:])
    ids = _class_ids(model, x, target)
    result = sanity_check(
        model, x, ids, [method], "cascading", seed=seed, options={method: options or {}}, progress=False
    )
    return _nan_where(torch.from_numpy(result.spearman[0, -1]).double(), _zero(values))
