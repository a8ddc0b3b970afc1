"""Composable objectives: what the optimization loop *maximizes*.

An :class:`Objective` is a small object holding a function of one evaluation of the
model (activations at named layers, logits, and the image itself) that returns one
score per image, ``Tensor[N]``. Objectives add, subtract, negate and scale (by numbers
or by each other), as in lucent's ``objectives`` (Olah et al. 2017); layers are
dotted module names.

Convention (differs from lucent, whose objectives are losses to minimise): every
objective here is a score the loop *maximizes*. The terms that are naturally losses
(:func:`match_activations`, :func:`gram`, and the penalties in
:mod:`~convscope.optimize.regularizers`) return the positive loss, so a configuration
subtracts them: ``-match_activations("blocks.2", target) - 1e-2 * total_variation()``.

>>> objective = channel("blocks.4", 7) - 0.01 * total_variation()
>>> objective.layers
('blocks.4',)
"""

from __future__ import annotations

__all__ = [
    "as_objective",
    "channel",
    "class_logit",
    "direction",
    "diversity",
    "embedding",
    "Evaluation",
    "gram",
    "gram_matrix",
    "layer_energy",
    "match_activations",
    "neuron",
    "Objective",
    "ScoreFn",
]

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConvscopeError


class Evaluation:
    """What an objective sees: one forward pass of the model.

    Attributes:
        activations: layer name -> output of that layer (N, C, H, W) or (N, D).
        logits: the model's output (N, K) (pre-softmax); ``None`` when the loop cut the
            forward pass short after the layers the objective reads (reading it then is an error).
        image: the image being optimized (N, 3, H, W) in [0, 1], before transforms.
        read_logits: whether an objective has read ``logits`` (the loop cuts the forward pass
            short only for objectives that never do).
    """

    def __init__(self, activations: Mapping[str, torch.Tensor], logits: torch.Tensor | None, image: torch.Tensor):
        self.activations, self._logits, self.image = activations, logits, image
        self.read_logits = False

    @property
    def logits(self) -> torch.Tensor:
        self.read_logits = True
        if self._logits is None:
            raise ConvscopeError(
                "this objective reads the logits only on some steps; the forward pass "
                "was cut short after its layers: read them on every step"
            )
        return self._logits

    def __getitem__(self, layer: str) -> torch.Tensor:
        return self.activations[layer]


ScoreFn = Callable[[Evaluation], torch.Tensor]


class Objective:
    """A score per image, ``fn(evaluation) -> Tensor[N]``, and the layers it reads.

    Args:
        fn: the score function.
        layers: dotted names of the layers whose outputs ``fn`` reads.
        name: a short description (shown in records and figure titles).
    """

    def __init__(self, fn: ScoreFn, layers: Sequence[str] = (), name: str = "objective"):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, evaluation: Evaluation) -> torch.Tensor:
        return self.fn(evaluation)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def _combine(self, other, op: Callable, symbol: str) -> Objective:
        if isinstance(other, Objective):
            return Objective(
                lambda e: op(self(e), other(e)), self.layers + other.layers, f"{self.name} {symbol} {other.name}"
            )
        if isinstance(other, (int, float)):
            return Objective(lambda e: op(self(e), other), self.layers, f"{self.name} {symbol} {other:g}")
        return NotImplemented

    def __add__(self, other):
        return self._combine(other, lambda a, b: a + b, "+")

    def __radd__(self, other):  # lets sum([...]) start from 0
        return self if isinstance(other, (int, float)) and other == 0 else self._combine(other, lambda a, b: b + a, "+")

    def __sub__(self, other):
        return self._combine(other, lambda a, b: a - b, "-")

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda e: other * self(e), self.layers, f"{other:g}·({self.name})")
        return self._combine(other, lambda a, b: a * b, "×")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Objective(lambda e: -self(e), self.layers, f"-({self.name})")


def _per_image(values, count: int, device: torch.device, what: str) -> torch.Tensor:
    """An int or a list of ints (one per image) -> LongTensor[count]."""
    values = [values] if isinstance(values, int) else list(values)
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ConvscopeError(f"{len(values)} {what} for a batch of {count} images")
    return torch.tensor(values, dtype=torch.long, device=device)


def _spatial(activation: torch.Tensor, layer: str) -> torch.Tensor:
    if activation.ndim != 4:
        raise ConvscopeError(f"layer {layer!r} has output shape {tuple(activation.shape)}, not (N, C, H, W)")
    return activation


def _check_channels(index: torch.Tensor, available: int, layer: str) -> None:
    if int(index.max()) >= available or int(index.min()) < 0:
        raise ConvscopeError(f"channel {int(index.max())} is out of range: layer {layer!r} has {available} channels")


def channel(layer: str, index: int | Sequence[int]) -> Objective:
    """Mean activation of channel ``index`` over all positions of ``layer`` (Olah et al. 2017).

    ``index`` may be a list with one channel per image, to render many channels in one batch.
    """

    def fn(e: Evaluation) -> torch.Tensor:
        activation = _spatial(e[layer], layer)
        ids = _per_image(index, activation.shape[0], activation.device, "channels")
        _check_channels(ids, activation.shape[1], layer)
        return activation[torch.arange(len(ids), device=ids.device), ids].mean(dim=(-2, -1))

    return Objective(fn, [layer], f"{layer}:{index}")


def neuron(layer: str, index: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel ``index`` at one position of ``layer`` (the centre unless ``y``, ``x``)."""

    def fn(e: Evaluation) -> torch.Tensor:
        activation = _spatial(e[layer], layer)
        height, width = activation.shape[-2:]
        row, column = height // 2 if y is None else y, width // 2 if x is None else x
        if not (0 <= row < height and 0 <= column < width):
            raise ConvscopeError(f"position ({row}, {column}) is outside layer {layer!r}'s {height}x{width} map")
        ids = _per_image(index, activation.shape[0], activation.device, "channels")
        _check_channels(ids, activation.shape[1], layer)
        return activation[torch.arange(len(ids), device=ids.device), ids, row, column]

    return Objective(fn, [layer], f"{layer}:{index}@({'c' if y is None else y},{'c' if x is None else x})")


def class_logit(index: int | Sequence[int]) -> Objective:
    """The pre-softmax score of class ``index`` (Simonyan et al. 2014: maximising the
    logit rather than the probability, which can rise by pushing other classes down)."""

    def fn(e: Evaluation) -> torch.Tensor:
        ids = _per_image(index, e.logits.shape[0], e.logits.device, "classes")
        if int(ids.max()) >= e.logits.shape[-1] or int(ids.min()) < 0:
            raise ConvscopeError(f"class {int(ids.max())} is out of range: the model has {e.logits.shape[-1]} outputs")
        return e.logits.gather(1, ids[:, None])[:, 0]

    return Objective(fn, [], f"logit {index}")


def layer_energy(layer: str) -> Objective:
    """DeepDream's objective (Mordvintsev et al. 2015): ½‖h‖² of the layer's output, so its
    gradient w.r.t. h is h itself ("set h̄ = h"). Averaged over the elements of h (not
    summed) so the scale does not depend on the image size."""
    return Objective(lambda e: 0.5 * e[layer].flatten(1).pow(2).mean(dim=1), [layer], f"energy {layer}")


def direction(layer: str, vector: torch.Tensor, cosine: bool = False) -> Objective:
    """Dot product of ``vector`` (C,) with the layer's activation at every position, averaged
    (lucid's ``direction``); ``cosine=True`` uses cosine similarity instead (lucent's choice)."""
    vector = torch.as_tensor(vector, dtype=torch.float32).flatten()

    def fn(e: Evaluation) -> torch.Tensor:
        activation = e[layer]
        if activation.shape[1] != vector.numel():
            raise ConvscopeError(
                f"direction has {vector.numel()} entries, layer {layer!r} has {activation.shape[1]} channels"
            )
        v = vector.to(activation).view(1, -1, *([1] * (activation.ndim - 2)))
        values = F.cosine_similarity(activation, v, dim=1) if cosine else (activation * v).sum(dim=1)
        return values.flatten(1).mean(dim=1)

    return Objective(fn, [layer], f"direction {layer}")


def _gram_matrix(activation: torch.Tensor) -> torch.Tensor:
    features = activation.flatten(2)
    return features @ features.transpose(1, 2) / features.shape[-1]


def gram_matrix(activation: torch.Tensor) -> torch.Tensor:
    """Gram matrix F Fᵀ / (H·W) of (N, C, H, W) activations -> (N, C, C) (Gatys's code divides by H·W)."""
    return _gram_matrix(_spatial(activation, "input"))


def diversity(layer: str) -> Objective:
    """Batch diversity (Olah et al. 2017): minus the mean cosine similarity between the
    flattened Gram matrix of each image and those of the other images in the batch.
    Needs a batch of at least 2 images (the same value for every image)."""

    def fn(e: Evaluation) -> torch.Tensor:
        grams = F.normalize(_gram_matrix(_spatial(e[layer], layer)).flatten(1), dim=1)
        count = grams.shape[0]
        if count < 2:
            raise ConvscopeError("diversity needs a batch of at least 2 images")
        similarity = grams @ grams.T
        mean_other = (similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1))
        return (-mean_other).expand(count)

    return Objective(fn, [layer], f"diversity {layer}")


def _match_batch(target: torch.Tensor, activation: torch.Tensor, what: str) -> torch.Tensor:
    target = target.to(activation)
    if target.shape[1:] != activation.shape[1:] or target.shape[0] not in (1, activation.shape[0]):
        raise ConvscopeError(
            f"{what} target has shape {tuple(target.shape)}, the layer gives {tuple(activation.shape)}"
        )
    return target


def match_activations(layer: str, target: torch.Tensor) -> Objective:
    """Feature inversion loss (Mahendran & Vedaldi 2015): ‖Φ(x) − Φ0‖² / ‖Φ0‖² per image,
    with Φ0 = ``target`` (the layer's output for the image to invert). A loss: subtract it."""
    target = target.detach()

    def fn(e: Evaluation) -> torch.Tensor:
        activation = e[layer]
        goal = _match_batch(target, activation, "match_activations")
        error = (activation - goal).flatten(1).pow(2).sum(dim=1)
        return error / goal.flatten(1).pow(2).sum(dim=1).clamp_min(1e-12)

    return Objective(fn, [layer], f"relative error {layer}")


def gram(layer: str, target: torch.Tensor) -> Objective:
    """Style loss (Gatys et al. 2016) at one layer: mean over the C×C entries of (G − A)²,
    with G = F Fᵀ / (H·W) the Gram matrix of the image's activations and A that of
    ``target`` (activations (N|1, C, H', W') of the style image, or their Gram (N|1, C, C)).
    Equals the paper's 1/(4N²M²)·Σ(G − A)² up to a constant factor per layer. A loss: subtract it."""
    target = target.detach()
    target_gram = _gram_matrix(target) if target.ndim == 4 else target

    def fn(e: Evaluation) -> torch.Tensor:
        current = _gram_matrix(_spatial(e[layer], layer))
        goal = target_gram.to(current)
        if goal.shape[1:] != current.shape[1:] or goal.shape[0] not in (1, current.shape[0]):
            raise ConvscopeError(f"gram target has {goal.shape[1]} channels, layer {layer!r} has {current.shape[1]}")
        return (current - goal).pow(2).flatten(1).mean(dim=1)

    return Objective(fn, [layer], f"gram {layer}")


def embedding(target: torch.Tensor, layer: str | None = None) -> Objective:
    """Cosine similarity between an output vector and ``target`` (D,) or (N, D): inverting an
    embedding (e.g. a CLIP image encoder towards a text embedding; the seeds' "inverting CLIP").

    ``layer=None`` uses the model's own output (for an encoder that returns the embedding);
    a named layer is flattened, after averaging over positions when it is spatial.
    """
    target = torch.as_tensor(target).detach()

    def fn(e: Evaluation) -> torch.Tensor:
        output = e.logits if layer is None else e[layer]
        vector = output.mean(dim=(-2, -1)) if output.ndim == 4 else output.flatten(1)
        goal = target.to(vector).reshape(-1, vector.shape[1]) if target.numel() % vector.shape[1] == 0 else None
        if goal is None or goal.shape[0] not in (1, vector.shape[0]):
            raise ConvscopeError(
                f"embedding target has shape {tuple(target.shape)}, the output vector has {vector.shape[1]} entries"
            )
        return F.cosine_similarity(vector, goal, dim=1)

    return Objective(
        fn, [] if layer is None else [layer], f"cosine to embedding{'' if layer is None else ' at ' + layer}"
    )


def as_objective(objective: Objective | Callable[[Evaluation], torch.Tensor]) -> Objective:
    """Accept an :class:`Objective` or a bare function of an :class:`Evaluation` (reads no layers)."""
    if isinstance(objective, Objective):
        return objective
    if callable(objective):
        return Objective(objective, [], getattr(objective, "__name__", "custom"))
    raise ConvscopeError(f"objective must be an Objective or a callable, got {type(objective).__name__}")
