"""Substitute-model transfer attack (Papernot et al. 2017): a black box that only returns labels.

1. Label a seed set with the black box (one query per image).
2. Train a substitute on those labels; grow the set by Jacobian-based augmentation,
   ``S ← S ∪ {x + λ · sign(∇x Z_{Õ(x)}(x))}`` with the substitute's logit ``Z`` of the
   oracle label ``Õ(x)``, and label the new points (the set doubles each round).
3. Craft FGSM (or PGD) examples on the substitute (white-box) and send them to the black
   box: the transfer success rate is what the attack achieves.

The user's ``substitute`` module is deep-copied before training, so it is left as it was.
"""

from __future__ import annotations

__all__ = ["small_substitute", "substitute_attack", "SubstituteResult"]

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ._common import labels_for, progress_bar
from .gradient import fgsm, pgd
from .registry import ATTACKS


@dataclass
class SubstituteResult:
    """``x_adv`` crafted on ``substitute``; ``queries`` label queries to the black box per attacked image;
    ``transfer_success`` Bool[N] on the black box; ``agreement`` of substitute and black box on the seed set."""

    x_adv: torch.Tensor
    substitute: nn.Module
    queries: int
    transfer_success: torch.Tensor
    agreement: float


def small_substitute(classes: int) -> nn.Module:
    """A small CNN substitute (two conv blocks and a linear head), any input size."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, classes),
    )


def substitute_attack(
    black_box: nn.Module,
    seed: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    substitute: nn.Module | None = None,
    *,
    eps: float = 8 / 255,
    rounds: int = 3,
    step: float = 0.1,
    epochs: int = 10,
    lr: float = 1e-3,
    craft: str = "fgsm",
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> SubstituteResult:
    """Train a substitute from label queries, craft on it, transfer to the black box.

    Args:
        black_box: the attacked classifier (only its top-1 labels are used).
        seed: the initial substitute training images (S, 3, H, W) in [0, 1].
        x, y: images to attack and their labels (the black box's labels when None).
        substitute: architecture to train (default :func:`small_substitute`), copied first.
        eps: L∞ budget of the crafted examples; craft: ``"fgsm"`` or ``"pgd"`` (10 steps).
        rounds: augmentation rounds (the set doubles each); step: the paper's λ = 0.1.
        epochs: substitute training epochs per round (Adam, ``lr``).
        generator: shuffling source (reproducible); progress: progress bar.

    Returns:
        A :class:`SubstituteResult`.
    """
    if craft not in ("fgsm", "pgd") or rounds < 0 or epochs < 1:
        raise ConvscopeError("substitute_attack needs craft 'fgsm' or 'pgd', rounds >= 0 and epochs >= 1")
    seed, x = check_images(seed, "seed"), check_images(x)

    def oracle(images: torch.Tensor) -> torch.Tensor:
        with frozen(black_box), torch.no_grad():
            return black_box(images).argmax(dim=-1)

    with torch.no_grad():
        classes = black_box(seed[:1]).shape[-1] if isinstance(black_box, nn.Module) else None
    if substitute is not None:
        model = copy.deepcopy(substitute)
    else:
        with torch.random.fork_rng(devices=[]):  # initialise from ``generator`` without touching the global RNG
            if generator is not None:
                torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
            model = small_substitute(classes)
    model = model.to(seed.device).train()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    data, labels = seed.detach(), oracle(seed)
    queries = seed.shape[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with progress_bar((rounds + 1) * epochs, "substitute", progress) as advance:
        for round_ in range(rounds + 1):
            for _ in range(epochs):
                order = torch.randperm(data.shape[0], generator=generator, device=data.device)
                for start in range(0, data.shape[0], 32):
                    batch = order[start : start + 32]
                    optimizer.zero_grad()
                    F.cross_entropy(model(data[batch]), labels[batch]).backward()
                    optimizer.step()
                advance(1)
            if round_ < rounds:
                with frozen(model):
                    probe = data.clone().requires_grad_(True)
                    with torch.enable_grad():
                        (grad,) = torch.autograd.grad(model(probe).gather(1, labels[:, None]).sum(), probe)
                new = (data + step * grad.sign()).clamp(0, 1)
                data, labels = torch.cat([data, new]), torch.cat([labels, oracle(new)])
                queries += new.shape[0]
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        agreement = float((model(seed).argmax(dim=-1) == labels[: seed.shape[0]]).float().mean())
    y = labels_for(black_box, x, y)
    x_adv = fgsm(model, x, y, eps) if craft == "fgsm" else pgd(model, x, y, eps, eps / 4, 10, random_start=False)
    return SubstituteResult(x_adv, model, queries, oracle(x_adv) != y, agreement)


@ATTACKS.register(
    "substitute",
    norm="linf",
    eps=8 / 255,
    threat="black-box",
    targeted=False,
    wraps=(substitute_attack,),
    quick={"rounds": 1, "epochs": 2},
)
def _substitute_entry(
    model, x, labels, target, *, eps=None, generator=None, progress=False, seed_images=None, **options
):
    """Registry form: the seed set defaults to the attacked batch itself; queries are spread per image."""
    if target is not None:
        raise ConvscopeError("the substitute attack here is untargeted: drop --target")
    seed = x if seed_images is None else seed_images.to(x.device)
    result = substitute_attack(model, seed, x, labels, eps=eps, generator=generator, progress=progress, **options)
    per_image = torch.full((x.shape[0],), -(-result.queries // x.shape[0]) + 1, dtype=torch.long, device=x.device)
    return result.x_adv, per_image
