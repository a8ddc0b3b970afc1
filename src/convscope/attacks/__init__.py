"""Adversarial attacks: one entry point :func:`attack` over the :data:`ATTACKS` registry.

Conventions shared by every attack: images in and out in [0, 1] (normalisation is inside
the model); ``eps`` in pixel units (``8/255``); results clipped to the valid box; the
model's state untouched (:func:`convscope.frozen`); batched; deterministic under ``seed``.
"""

from __future__ import annotations

import time

import torch

from ..checks import check_images, check_options, keyword_parameters
from ..hooks import frozen
from ..targets import Target, resolve_target
from ..errors import ConvscopeError
from ..registry import import_submodules, unknown_options_message
from . import cw, deepfool, eot, evolution, gradient, square, substitute  # noqa: F401  (each module registers its attacks)
from ._common import labels_for
from .registry import ATTACKS, attack_options
from .result import AttackResult, distances

__all__ = ["ATTACKS", "AttackResult", "attack", "attack_options", "list_attacks"]


def list_attacks() -> list[str]:
    """Names accepted by ``attack(..., method=NAME)``."""
    return ATTACKS.names()


def attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    method: str = "pgd",
    eps: float | None = None,
    target: Target = None,
    *,
    seed: int | None = None,
    progress: bool = False,
    clean_logits: torch.Tensor | None = None,
    **options,
) -> AttackResult:
    """Attack a batch with a registered method and measure what happened.

    Args:
        model: classifier taking RGB in [0, 1] (an :class:`~convscope.ImageClassifier`).
        x: images (N, 3, H, W) in [0, 1].
        y: true classes LongTensor[N] (default: the model's predictions on ``x``).
        method: a name from :func:`list_attacks` (``fgsm``, ``bim``, ``pgd``, ``pgd_l2``, ...;
            the kebab-case spelling ``pgd-l2`` is accepted too).
        eps: the budget in pixel units (None: the method's default ``ATTACKS.meta(method)['eps']``;
            ignored by unbounded attacks).
        target: None for untargeted, or any form of the target contract (class id, name,
            list, tensor) for a targeted attack.
        seed: makes random starts / populations reproducible.
        progress: show a progress bar for iterative attacks.
        clean_logits: the model's outputs on ``x`` (eval mode) when the caller has them already
            (``attack-eval``'s clean pass): the clean forward is not run again.
        **options: passed to the method (``steps``, ``alpha``, ``restarts``, ``loss_fn``, ...); an
            option the method does not take is a ConvscopeError (:func:`attack_options` lists them).

    Returns:
        An :class:`AttackResult` with ``x_adv`` and the per-image record.

    >>> result = attack(model, x, method="pgd", eps=4/255, target="tabby")
    >>> result.success, result.confidence
    """
    x = check_images(x)
    method = ATTACKS.canonical(method)
    entry, meta = ATTACKS.get(method), ATTACKS.meta(method)
    accepted = attack_options(method)
    unknown = sorted(set(options) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ConvscopeError(unknown_options_message(f"attack {method!r}", unknown, accepted or []))
    if accepted is not None:  # NaN/inf, wrong types, negative counts: before anything runs
        chain = (ATTACKS.entry(method).function, *meta["wraps"])
        check_options(
            options, {k: v for k, v in keyword_parameters(chain).items() if k in accepted}, f"attack {method!r}"
        )
    budget = meta["eps"] if eps is None else eps
    x = x.detach()
    generator = torch.Generator(device=x.device).manual_seed(seed) if seed is not None else None
    with frozen(model):
        with torch.no_grad():
            if clean_logits is not None and clean_logits.shape[0] != x.shape[0]:
                raise ConvscopeError(f"clean_logits has {clean_logits.shape[0]} rows for {x.shape[0]} images")
            original = (model(x) if clean_logits is None else clean_logits.detach()).softmax(dim=-1)
        labels = labels_for(model, x, y) if y is not None else original.argmax(dim=-1)
        names = getattr(model, "labels", None)
        target_ids = resolve_target(target, original, names) if target is not None else None
        start = time.perf_counter()
        output = entry(model, x, labels, target_ids, eps=budget, generator=generator, progress=progress, **options)
        seconds = time.perf_counter() - start
        x_adv, queries = output if isinstance(output, tuple) else (output, None)
        x_adv = x_adv.detach().clamp(0, 1)
        with torch.no_grad():
            adversarial = model(x_adv).softmax(dim=-1)
    confidence, predicted = adversarial.max(dim=-1)
    original_confidence, original_predicted = original.max(dim=-1)
    success = predicted == target_ids if target_ids is not None else predicted != labels
    linf, l2, l0 = distances(x, x_adv)
    return AttackResult(
        method,
        x,
        x_adv,
        labels,
        target_ids,
        success,
        linf,
        l2,
        l0,
        queries,
        predicted,
        confidence,
        original_predicted,
        original_confidence,
        seconds,
        budget if meta["uses_eps"] else None,
        names,
    )


# then every other module of the package (after ``attack`` exists: some import it), so a new
# attack is one new file
import_submodules(__name__)
