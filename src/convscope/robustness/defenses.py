"""Defenses as model wrappers, and their honest evaluation.

Input transformations (each ``transform(x) -> x'`` in front of the classifier):

* ``jpeg``: JPEG re-encoding (Guo et al. 2018; Dziugaite et al. 2016), quality 75.
* ``bit_depth``: bit-depth reduction to 3 bits (Xu et al. 2018, feature squeezing).
* ``gaussian_noise``: additive Gaussian noise, sigma 0.05 (random).
* ``median``: 3x3 median filter (Xu et al. 2018).
* ``resize_pad``: random resize to [0.9, 1) of the side and random zero padding back (Xie et al. 2018).

Inside the network (each wraps the classifier, which it leaves as it was):

* ``sap``: stochastic activation pruning (Dhillon et al. 2018) after every activation layer (random;
  differentiable per draw). Athalye et al. 2018 broke it with EOT.

Evaluation (Athalye, Carlini & Wagner 2018): a *naive* attacker runs PGD on the undefended
classifier and hands the images to the defended one; an *adaptive* attacker runs PGD on the
defended classifier itself, with BPDA (the non-differentiable step replaced by the identity in
the backward pass) and EOT (the gradient averaged over ``eot_samples`` draws of a random step).
Convention: the defended forward pass always runs the real transform; only gradients are
approximated.
"""

from __future__ import annotations

__all__ = [
    "bit_depth_defense",
    "DefendedModel",
    "DefenseResult",
    "DEFENSES",
    "evaluate_defense",
    "ExpectationOverTransformation",
    "gaussian_noise_defense",
    "InputDefense",
    "jpeg_defense",
    "median_defense",
    "ModelDefense",
    "resize_pad_defense",
    "sap_defense",
    "StochasticActivationPruning",
]

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.gradient import pgd
from ..checks import check_images
from ..errors import ConvscopeError
from ..filters import jpeg
from ..hooks import frozen, rewrite_outputs
from ..registry import Registry


@dataclass(frozen=True)
class InputDefense:
    """An input transformation: ``apply(x, generator)``; ``differentiable`` says whether autograd
    through it is exact (else BPDA uses the identity); ``random`` whether EOT is needed."""

    name: str
    apply: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
    differentiable: bool
    random: bool

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The transformation of images ``x`` (N, 3, H, W) in [0, 1], checked first."""
        return self.apply(check_images(x), generator)

    def wrap(self, model: nn.Module, generator: torch.Generator | None = None, bpda: bool = False) -> nn.Module:
        """``model`` behind this transformation (:class:`DefendedModel`)."""
        return DefendedModel(model, self, bpda=bpda, generator=generator)


@dataclass(frozen=True)
class ModelDefense:
    """A defense inside the network: ``build(model, generator)`` is the defended classifier (a wrapper
    that leaves ``model`` as it was); ``differentiable`` and ``random`` as for :class:`InputDefense`."""

    name: str
    build: Callable[[nn.Module, torch.Generator | None], nn.Module]
    differentiable: bool = True
    random: bool = True

    def wrap(self, model: nn.Module, generator: torch.Generator | None = None, bpda: bool = False) -> nn.Module:
        """The defended ``model`` (``bpda`` changes nothing: the defense is differentiable per draw)."""
        return self.build(model, generator)


DEFENSES: Registry[Callable[..., InputDefense | ModelDefense]] = Registry("defense", acts_on="input")
"""Name -> factory ``(**options) -> InputDefense | ModelDefense``; ``acts_on`` is ``"input"`` or
``"activations"`` (a :class:`ModelDefense`)."""


@DEFENSES.register("jpeg")
def jpeg_defense(quality: int = 75) -> InputDefense:
    """JPEG re-encoding at ``quality`` (libjpeg through torchvision; not differentiable)."""

    def apply(x, generator=None):
        return jpeg(x, quality)

    return InputDefense(f"jpeg(q={quality})", apply, differentiable=False, random=False)


@DEFENSES.register("bit_depth")
def bit_depth_defense(bits: int = 3) -> InputDefense:
    """Quantise every channel to ``2**bits`` levels (not differentiable: zero gradient a.e.)."""
    levels = 2**bits - 1

    def apply(x, generator=None):
        return torch.round(x * levels) / levels

    return InputDefense(f"bit_depth({bits})", apply, differentiable=False, random=False)


@DEFENSES.register("gaussian_noise")
def gaussian_noise_defense(sigma: float = 0.05) -> InputDefense:
    """Add N(0, sigma^2) noise and clip to [0, 1] (random; differentiable)."""

    def apply(x, generator=None):
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + sigma * noise).clamp(0, 1)

    return InputDefense(f"gaussian_noise({sigma:g})", apply, differentiable=True, random=True)


@DEFENSES.register("median")
def median_defense(size: int = 3) -> InputDefense:
    """``size`` x ``size`` median filter, reflect padding (treated as non-differentiable: BPDA)."""
    pad = size // 2

    def apply(x, generator=None):
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        patches = padded.unfold(2, size, 1).unfold(3, size, 1)
        return patches.reshape(*x.shape, size * size).median(dim=-1).values

    return InputDefense(f"median({size}x{size})", apply, differentiable=False, random=False)


@DEFENSES.register("resize_pad")
def resize_pad_defense(min_scale: float = 0.9) -> InputDefense:
    """Xie 2018: resize to a random side in [min_scale * S, S), zero-pad at a random place to S."""

    def apply(x, generator=None):
        n, _, h, w = x.shape
        side = int(torch.randint(int(min_scale * h), h, (1,), generator=generator, device=x.device))
        small = F.interpolate(x, size=(side, side * w // h), mode="bilinear", align_corners=False)
        top = int(torch.randint(h - small.shape[2] + 1, (1,), generator=generator, device=x.device))
        left = int(torch.randint(w - small.shape[3] + 1, (1,), generator=generator, device=x.device))
        return F.pad(small, (left, w - small.shape[3] - left, top, h - small.shape[2] - top))

    return InputDefense(f"resize_pad({min_scale:g})", apply, differentiable=True, random=True)


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish)
"""The module types :class:`StochasticActivationPruning` prunes after by default."""


class StochasticActivationPruning(nn.Module):
    """Stochastic activation pruning (SAP; Dhillon et al. 2018, Algorithm 1) inside ``model``.

    At each pruned layer and for each image, ``r = ratio * d`` indices are drawn with replacement
    from the layer's ``d`` activations with probability ``p_i = |a_i| / sum_j |a_j|``; the
    activations never drawn are set to 0 and each survivor is divided by its probability of
    surviving, ``1 - (1 - p_i)^r``, so that the expected activation is unchanged. Every forward pass
    is a fresh draw, so the classifier is random; its gradient is the exact gradient of one draw,
    which Dhillon et al. took as the attacker's and Athalye et al. (2018) replaced by the mean over
    draws (EOT).

    Args:
        model: any ``nn.Module`` classifier; hooks are on it only during a forward pass.
        layers: dotted names whose outputs are pruned (default: every activation module, the
            types in :data:`ACTIVATIONS`; Dhillon et al. prune after every layer).
        ratio: draws per activation, ``r / d`` (1.0: the paper's "SAP-100").
        generator: the source of the draws (reproducible when seeded).

    >>> defended = StochasticActivationPruning(model, generator=torch.Generator().manual_seed(0))
    >>> logits = defended(x)  # a new draw on every call
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] | None = None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if not ratio > 0:
            raise ConvscopeError(f"ratio must be positive (draws per activation), got {ratio}")
        names = [name for name, module in model.named_modules() if isinstance(module, ACTIVATIONS)]
        self.layers = list(layers) if layers is not None else names
        if not self.layers:
            raise ConvscopeError(
                "the model has no activation modules (nn.ReLU, nn.GELU, ...) to prune after: name the layers"
            )
        self.model, self.ratio, self.generator = model, ratio, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with rewrite_outputs(self.model, self.layers, self.prune):
            return self.model(check_images(x))

    def prune(self, activations: torch.Tensor) -> torch.Tensor:
        """One SAP draw on a layer's output (N, ...): each image's activations pruned independently."""
        flat = activations.flatten(1)
        magnitude = flat.abs()
        total = magnitude.sum(1, keepdim=True)
        probability = magnitude / torch.where(total > 0, total, 1.0)
        draws = max(1, round(self.ratio * flat.shape[1]))
        # an all-zero row stays zero whatever is drawn: draw it uniformly
        weights = torch.where(total > 0, probability, 1.0).detach()
        drawn = torch.multinomial(weights, draws, replacement=True, generator=self.generator)
        kept = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, drawn, True) & (magnitude > 0)
        survival = -torch.expm1(draws * torch.log1p(-probability))  # 1 - (1 - p)^r without cancellation
        # divide only where kept (p > 0 there), so no 0/0 reaches the forward or the backward pass
        pruned = torch.where(kept, flat / torch.where(kept, survival, 1.0), 0.0)
        return pruned.view_as(activations)


@DEFENSES.register("sap", acts_on="activations")
def sap_defense(ratio: float = 1.0, layers: Sequence[str] | None = None) -> ModelDefense:
    """Stochastic activation pruning (Dhillon et al. 2018) after ``layers`` (default: every activation)."""

    def build(model, generator=None):
        return StochasticActivationPruning(model, layers, ratio, generator)

    return ModelDefense(f"sap({ratio:g})", build, differentiable=True, random=True)


class DefendedModel(nn.Module):
    """``model(defense(x))``: the classifier behind an input transformation.

    With ``bpda=True`` the forward value is unchanged but the backward pass treats a
    non-differentiable transformation as the identity (Athalye 2018's straight-through BPDA).
    """

    def __init__(
        self, model: nn.Module, defense: InputDefense, bpda: bool = False, generator: torch.Generator | None = None
    ):
        super().__init__()
        self.model, self.defense, self.bpda, self.generator = model, defense, bpda, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        transformed = self.defense(x, self.generator)
        if self.bpda and not self.defense.differentiable:
            transformed = x + (transformed - x).detach()
        return self.model(transformed)


class ExpectationOverTransformation(nn.Module):
    """Mean log-probabilities of ``model`` over ``samples`` forward passes (Athalye 2018's EOT).

    With the negative log-likelihood of these mean log-probabilities as loss, the gradient is
    exactly the mean of the per-draw cross-entropy gradients.
    """

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        self.model, self.samples = model, samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(x).log_softmax(-1) for _ in range(self.samples)]).mean(0)


def _nll(log_probabilities: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(log_probabilities, y, reduction="none")


@dataclass(frozen=True)
class DefenseResult:
    """Accuracy of one defended classifier: clean, under the naive and under the adaptive attack,
    and the per-image worst case (an image counts only if it is classified correctly clean and
    under every attack run: the accuracy an attacker choosing per image would leave)."""

    defense: str
    clean_accuracy: float
    naive_accuracy: float
    adaptive_accuracy: float
    adaptive_attack: str
    worst_case_accuracy: float = float("nan")
    correct: torch.Tensor | None = None  #: Bool (3, N): clean, naive, adaptive


def evaluate_defense(
    model: nn.Module,
    defense: InputDefense | ModelDefense | str,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    steps: int = 10,
    alpha: float | None = None,
    eot_samples: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> DefenseResult:
    """Evaluate ``defense`` in front of ``model`` against a naive and an adaptive L∞ PGD attacker.

    Args:
        model: the undefended classifier (RGB in [0, 1]); left as it was.
        defense: an :class:`InputDefense`, a :class:`ModelDefense` or a name in :data:`DEFENSES`
            (default options).
        x, y: images (N, 3, H, W) in [0, 1] and their true labels.
        eps, steps, alpha: the PGD attack (alpha defaults to ``2.5 * eps / steps``).
        eot_samples: draws averaged per gradient for random defenses (adaptive attack).
        seed: seeds the defenses' randomness and the attack starts.

    >>> evaluate_defense(model, "jpeg", x, y, eps=4/255)
    """
    x = check_images(x)
    if isinstance(defense, str):
        defense = DEFENSES.get(defense)()
    if steps < 1 or eot_samples < 1:
        raise ConvscopeError("steps and eot_samples must be at least 1")
    alpha = alpha or 2.5 * eps / steps
    y = torch.as_tensor(y, device=x.device).long()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    defended = defense.wrap(model, generator)
    adaptive = defense.wrap(model, generator, bpda=True)
    attacker = ExpectationOverTransformation(adaptive, eot_samples if defense.random else 1)

    def correct(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (defended(images).argmax(-1) == y).cpu()

    with frozen(model):
        clean_correct = correct(x)
        naive = pgd(model, x, y, eps, alpha, steps, generator=generator, progress=progress)
        strong = pgd(attacker, x, y, eps, alpha, steps, loss_fn=_nll, generator=generator, progress=progress)
        table = torch.stack([clean_correct, correct(naive), correct(strong)])
    clean, naive_accuracy, adaptive_accuracy = (float(row.float().mean()) for row in table)
    parts = (["BPDA"] if not defense.differentiable else []) + ([f"EOT-{eot_samples}"] if defense.random else [])
    return DefenseResult(
        defense.name,
        clean,
        naive_accuracy,
        adaptive_accuracy,
        f"PGD-{steps}" + (" + " + " + ".join(parts) if parts else ""),
        float(table.all(dim=0).float().mean()),
        table,
    )
