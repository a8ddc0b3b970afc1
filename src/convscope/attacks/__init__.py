"""Adversarial attacks: one entry point :func:`attack` over the :data:`ATTACKS` registry.

Conventions shared by every attack: images in and out in [0, 1] (normalisation is inside
the model); ``eps`` in pixel units (``8/255``); results clipped to the valid box; the
model's state untouched (:func:`convscope.frozen`); batched; deterministic under ``seed``.
"""

from __future__ import annotations

import time

import torch

from ..checks import check_images, check_options
from ..hooks import frozen
from ..targets import Target, resolve_target
from . import cw, deepfool, eot, evolution, gradient, square, substitute  # noqa: F401  (each module registers its attacks)
from ._common import labels_for
from .registry import ATTACKS
from .result import AttackResult, distances

__all__ = ["ATTACKS", "AttackResult", "attack", "attack_options", "list_attacks"]


def list_attacks() -> list[str]:
    """Names accepted by ``attack(..., method=NAME)``."""
    return ATTACKS.names()


_PASSED = {"model", "x", "y", "labels", "target", "eps", "generator", "progress", "targeted"}


def attack_options(method: str) -> dict:
    """The ``**options`` a registered attack accepts: ``{name: inspect.Parameter}`` of its entry and
    the convscope attack functions the entry calls (those ``attack`` passes itself left out)."""
    import inspect

    from ..checks import keyword_parameters

    entry = ATTACKS.get(method)
    called = [entry.__globals__[name] for name in entry.__code__.co_names
              if inspect.isfunction(entry.__globals__.get(name))
              and entry.__globals__[name].__module__.startswith(__name__)]
    return keyword_parameters([entry, *called], _PASSED)


def attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, method: str = "pgd",
           eps: float | None = None, target: Target = None, *, seed: int | None = None, progress: bool = False,
           **options) -> AttackResult:
    """Attack a batch with a registered method and measure what happened.

    Args:
        model: classifier taking RGB in [0, 1] (an :class:`~convscope.ImageClassifier`).
        x: images (N, 3, H, W) in [0, 1].
        y: true classes LongTensor[N] (default: the model's predictions on ``x``).
        method: a name from :func:`list_attacks` (``fgsm``, ``bim``, ``pgd``, ``pgd-l2``, ...).
        eps: the budget in pixel units (None: the method's default; ignored by unbounded attacks).
        target: None for untargeted, or any form of the target contract (class id, name,
            list, tensor) for a targeted attack.
        seed: makes random starts / populations reproducible.
        progress: show a progress bar for iterative attacks.
        **options: passed to the method (``steps``, ``alpha``, ``restarts``, ``loss_fn``, ...).

    Returns:
        An :class:`AttackResult` with ``x_adv`` and the per-image record.

    >>> result = attack(model, x, method="pgd", eps=4/255, target="tabby")
    >>> result.success, result.confidence
    """
    x = check_images(x)
    entry = ATTACKS.get(method)
    check_options(options, attack_options(method), f"attack {method!r}")
    x = x.detach()
    generator = torch.Generator(device=x.device).manual_seed(seed) if seed is not None else None
    with frozen(model):
        with torch.no_grad():
            original = model(x).softmax(dim=-1)
        labels = labels_for(model, x, y) if y is not None else original.argmax(dim=-1)
        names = getattr(model, "labels", None)
        target_ids = resolve_target(target, original, names) if target is not None else None
        start = time.perf_counter()
        output = entry(model, x, labels, target_ids, eps=eps, generator=generator, progress=progress, **options)
        seconds = time.perf_counter() - start
        x_adv, queries = output if isinstance(output, tuple) else (output, None)
        x_adv = x_adv.detach().clamp(0, 1)
        with torch.no_grad():
            adversarial = model(x_adv).softmax(dim=-1)
    confidence, predicted = adversarial.max(dim=-1)
    original_confidence, original_predicted = original.max(dim=-1)
    success = predicted == target_ids if target_ids is not None else predicted != labels
    linf, l2, l0 = distances(x, x_adv)
    return AttackResult(method, x, x_adv, labels, target_ids, success, linf, l2, l0, queries, predicted,
                        confidence, original_predicted, original_confidence, seconds, eps, names)
