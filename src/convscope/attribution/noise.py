"""Noise averaging: SmoothGrad (Smilkov et al. 2017), SmoothGrad² and :func:`smooth` for any method.

Noise convention (the paper's, and zennit's): Gaussian noise with standard deviation
``noise * (max(x_i) - min(x_i))`` per image, ``noise`` = 0.15 by default (the paper
recommends 10-20 %). captum's ``NoiseTunnel`` instead uses an absolute ``stdevs=1.0``.
Noisy copies are not clipped to [0, 1] (as in the paper) and explain the class of the
clean image. Copies are evaluated ``batch_size`` images at a time, so memory stays
bounded whatever ``samples`` is (the number of copies; ``n`` is its old name, still accepted
with a deprecation warning). ``seed`` makes the noise reproducible with a generator of
its own (the global RNG is left alone); ``seed=None`` draws from the global torch RNG.
"""

from __future__ import annotations

__all__ = ["fixed_targets", "noise_average", "noisy_batches", "smooth", "smoothgrad", "smoothgrad_sq"]

import functools
from typing import Callable

import torch

from ..registry import renamed_options
from ..targets import resolve_target
from .gradients import target_gradient, reduce_channels
from .registry import METHODS


def fixed_targets(model, x: torch.Tensor, target):
    """Class ids ``LongTensor[N]`` of the clean images (a callable target stays as it is).

    Noisy, interpolated or occluded copies must explain the class chosen on the *clean*
    image, not whatever each copy is predicted as. Costs one forward pass without gradients.
    """
    if callable(target) and not isinstance(target, torch.Tensor):
        return target
    with torch.no_grad():
        logits = model(x)
    return resolve_target(target, logits, getattr(model, "labels", None))


def noisy_batches(x: torch.Tensor, samples: int, noise: float, batch_size: int, seed: int | None):
    """Yield ``(index, copies)``: chunks of at most ``batch_size`` of the ``samples`` noisy copies of image ``index``."""
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)
    per_chunk = max(1, min(samples, batch_size))
    for index in range(x.shape[0]):
        image = x[index : index + 1]
        sigma = noise * (image.max() - image.min())
        for start in range(0, samples, per_chunk):
            count = min(per_chunk, samples - start)
            shape = (count, *image.shape[1:])
            yield index, image + sigma * torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)


def noise_average(
    function: Callable[[torch.Tensor, object], torch.Tensor],
    model,
    x,
    target,
    samples: int,
    noise: float,
    batch_size: int,
    seed: int | None,
) -> torch.Tensor:
    """Mean over ``samples`` noisy copies of ``function(copies, targets)`` for every image of ``x``."""
    if samples < 1 or noise < 0:
        from ..errors import ConvscopeError

        raise ConvscopeError(f"smoothing needs samples >= 1 and noise >= 0, got samples={samples}, noise={noise}")
    ids = fixed_targets(model, x, target)
    total: list[torch.Tensor | None] = [None] * x.shape[0]
    for index, copies in noisy_batches(x, samples, noise, batch_size, seed):
        target_here = ids[index : index + 1].expand(copies.shape[0]) if isinstance(ids, torch.Tensor) else ids
        part = function(copies, target_here).sum(dim=0, keepdim=True)
        total[index] = part if total[index] is None else total[index] + part
    return torch.cat(total) / samples


@renamed_options(n="samples")
def smooth(
    method: Callable, samples: int = 16, noise: float = 0.15, batch_size: int = 16, seed: int | None = None
) -> Callable:
    """A new method: ``method`` averaged over ``samples`` noisy copies (the SmoothGrad idea for any map).

    >>> smooth_guided = smooth(guided_backprop, samples=16, noise=0.15)
    >>> smooth_guided(model, x, 285).shape
    torch.Size([1, 3, 224, 224])
    """

    @functools.wraps(method)
    def smoothed(model, x, target=None, **options):
        return noise_average(
            lambda copies, ids: method(model, copies, ids, **options),
            model,
            x,
            target,
            samples,
            noise,
            batch_size,
            seed,
        )

    return smoothed


@METHODS.register(kind="noise", stochastic=True, quick={"samples": 8, "seed": 0})
@renamed_options(n="samples")
def smoothgrad(
    model,
    x,
    target=None,
    samples: int = 16,
    noise: float = 0.15,
    batch_size: int = 16,
    seed: int | None = None,
    signed: bool = False,
    channels: str | None = "max",
    objective: str = "logit",
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies, then reduced like saliency.

    ``E[grad]`` per channel first (the paper smooths the sensitivity map, the gradient),
    then |.| and max over channels as Simonyan's map (``signed``/``channels`` as in
    :func:`~convscope.attribution.gradients.saliency`). captum's ``NoiseTunnel(Saliency())``
    averages |grad| instead (the absolute value is taken before averaging there).

    Returns:
        (N, 1, H, W), or (N, 3, H, W) for ``channels=None``.
    """
    mean = noise_average(
        lambda copies, ids: target_gradient(model, copies, ids, objective),
        model,
        x,
        target,
        samples,
        noise,
        batch_size,
        seed,
    )
    return reduce_channels(mean, channels, absolute=not signed)


@METHODS.register(kind="noise", stochastic=True, quick={"samples": 8, "seed": 0})
@renamed_options(n="samples")
def smoothgrad_sq(
    model,
    x,
    target=None,
    samples: int = 16,
    noise: float = 0.15,
    batch_size: int = 16,
    seed: int | None = None,
    channels: str | None = "max",
    objective: str = "logit",
) -> torch.Tensor:
    """SmoothGrad² (Hooker et al. 2019): ``E[grad²]`` over noisy copies, max over channels.

    The per-channel ``E[grad²]`` (``channels=None``) is captum's
    ``NoiseTunnel(Saliency(), nt_type="smoothgrad_sq")`` with the same noise.
    """
    mean = noise_average(
        lambda copies, ids: target_gradient(model, copies, ids, objective).pow(2),
        model,
        x,
        target,
        samples,
        noise,
        batch_size,
        seed,
    )
    return reduce_channels(mean, channels)
