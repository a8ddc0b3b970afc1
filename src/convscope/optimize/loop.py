"""The one optimization loop behind feature visualization, DeepDream, inversion and style.

Freeze the model, make an image from its parameterization, apply random transforms, run
the model with hooks at the layers the objective reads (after the first step, only as far
as those layers when the objective never reads the logits), and step the parameters to
*maximize* the objective (summed over the batch; images are optimized independently
unless an objective couples them, like ``diversity``). Adam by default (lucent:
lr 0.05), L-BFGS optional (Gatys et al. 2016; use it without random transforms).
"""

from __future__ import annotations

__all__ = ["evaluate", "NormalizedAscent", "OptimizationResult", "optimize", "OPTIMIZERS", "progress_bar"]

import contextlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from ..checks import check_images
from ..errors import ConvscopeError
from ..hooks import ForwardStopped, capture, cut_forward, frozen
from ..layers import check_layers
from .objectives import Evaluation, Objective, as_objective
from .params import ImageParam
from .regularizers import StepOperation
from .transforms import Transform, compose

OPTIMIZERS = ("adam", "lbfgs", "normalized")


class NormalizedAscent(torch.optim.Optimizer):
    """Gradient steps of size ``lr / mean|g|`` per image (google/deepdream's update rule, there
    1.5 on 0–255 images, i.e. about 0.006 here)."""

    def __init__(self, params, lr: float = 0.006):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        with torch.enable_grad():
            loss = closure() if closure is not None else None
        for group in self.param_groups:
            for tensor in group["params"]:
                if tensor.grad is not None:
                    scale = tensor.grad.abs().flatten(1).mean(dim=1).clamp_min(1e-12)
                    tensor.sub_(group["lr"] * tensor.grad / scale.view(-1, *([1] * (tensor.ndim - 1))))
        return loss


@dataclass
class OptimizationResult:
    """What one run of :func:`optimize` produced.

    Attributes:
        image: the final images (N, 3, H, W) in [0, 1], detached.
        history: the objective (mean over the batch) at every step.
        terms: name -> history of each extra term passed as ``record``.
        scores: the objective per image at the last step (N,).
        snapshots: (step, images) every ``snapshot_every`` steps.
        steps: how many steps ran.
        stopped: ``"done"``, ``"early stop"`` or ``"interrupted"`` (Ctrl-C).
    """

    image: torch.Tensor
    history: list[float]
    terms: dict[str, list[float]] = field(default_factory=dict)
    scores: torch.Tensor | None = None
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    steps: int = 0
    stopped: str = "done"


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True):
    """The package's progress bar (:func:`convscope.progress.progress_bar`) yielding ``advance(text)``."""
    from ..progress import progress_bar as shared

    with shared(total, description, enabled, interrupted=None, remaining=True) as advance:
        yield lambda text="": advance(1, text)


def optimize(
    model: nn.Module,
    objective: Objective,
    param: ImageParam,
    *,
    transforms: Sequence[Transform] = (),
    steps: int = 256,
    lr: float = 0.05,
    optimizer: str = "adam",
    seed: int = 0,
    progress: bool = True,
    snapshot_every: int | None = None,
    early_stop: int | None = None,
    tolerance: float = 1e-4,
    step_operations: Sequence[StepOperation] = (),
    record: Mapping[str, Objective] | None = None,
    description: str = "optimizing",
) -> OptimizationResult:
    """Maximize ``objective`` over the images of ``param``.

    Args:
        model: any ``nn.Module`` taking images in [0, 1] (left exactly as it was).
        objective: the score to maximize (see :mod:`~convscope.optimize.objectives`).
        param: the parameterized images (see :func:`~convscope.optimize.params.image_param`).
        transforms: random transforms applied (in order) before every forward pass.
        steps: optimizer steps.
        lr: learning rate (L-BFGS: its step length, 1 is usual).
        optimizer: ``"adam"``, ``"lbfgs"`` (strong-Wolfe line search, one iteration per step) or
            ``"normalized"`` (DeepDream's gradient steps of size lr / mean|g|).
        seed: seeds the random transforms.
        progress: show a progress bar.
        snapshot_every: keep a copy of the images every k steps.
        early_stop: stop when the objective has not improved by ``tolerance`` (relative)
            for this many steps.
        step_operations: in-place operations on ``param.pixels`` after each step
            (:mod:`~convscope.optimize.regularizers`' blur and clipping).
        record: name -> extra objective to log at every step (e.g. loss terms).
        description: the progress bar's label.

    Returns:
        :class:`OptimizationResult`. Ctrl-C stops cleanly, returning what was reached.
    """
    objective = as_objective(objective)
    record = dict(record or {})
    if optimizer not in OPTIMIZERS:
        raise ConvscopeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if steps < 1:
        raise ConvscopeError(f"steps must be at least 1, got {steps}")
    layers = list(dict.fromkeys(objective.layers + tuple(name for term in record.values() for name in term.layers)))
    check_layers(model, layers)
    pixels = param.pixels if step_operations else None
    generator = torch.Generator().manual_seed(seed)
    transform = compose(transforms)
    if optimizer == "adam":
        solver = torch.optim.Adam([param.tensor], lr=lr)
    elif optimizer == "normalized":
        solver = NormalizedAscent([param.tensor], lr=lr)
    else:
        solver = torch.optim.LBFGS([param.tensor], lr=lr, max_iter=1, line_search_fn="strong_wolfe")
    result = OptimizationResult(image=param().detach(), history=[], terms={name: [] for name in record})
    best, since_best = -float("inf"), 0

    with (
        frozen(model),
        capture(model, layers) as seen,
        cut_forward(model, layers) as cut,
        progress_bar(steps, description, progress) as advance,
    ):

        def closure() -> torch.Tensor:
            solver.zero_grad()
            image = param()
            cut.begin()
            try:
                logits = model(transform(image, generator))
            except ForwardStopped:
                logits = None
            evaluation = Evaluation(seen.activations, logits, image)
            scores = objective(evaluation)
            if scores.ndim != 1 or scores.shape[0] != image.shape[0]:
                raise ConvscopeError(
                    f"objective {objective.name!r} must give one score per image, got shape {tuple(scores.shape)}"
                )
            loss = -scores.sum()
            loss.backward()
            with torch.no_grad():
                closure.scores = scores.detach()
                closure.terms = {name: float(term(evaluation).mean()) for name, term in record.items()}
            closure.read_logits = evaluation.read_logits
            return loss

        try:
            for step in range(steps):
                solver.step(closure)
                if step == 0 and layers and not closure.read_logits:
                    cut.arm()  # later passes stop after the objective's layers (the rest is never read)
                param.project()
                if pixels is not None:
                    with torch.no_grad():
                        for operation in step_operations:
                            operation(pixels, step)
                score = float(closure.scores.mean())
                result.history.append(score)
                for name, value in closure.terms.items():
                    result.terms[name].append(value)
                result.scores, result.steps = closure.scores, step + 1
                if snapshot_every and (step + 1) % snapshot_every == 0:
                    result.snapshots.append((step + 1, param().detach().clone()))
                advance(f"objective {score:.4g}")
                if not torch.isfinite(closure.scores).all():
                    raise ConvscopeError("the objective became NaN/inf: lower the learning rate")
                if early_stop:
                    if best == -float("inf") or score > best + tolerance * abs(best):
                        best, since_best = score, 0
                    else:
                        since_best += 1
                        if since_best >= early_stop:
                            result.stopped = "early stop"
                            break
        except KeyboardInterrupt:
            result.stopped = "interrupted"
    result.image = param().detach()
    return result


def evaluate(model: nn.Module, objective: Objective, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """The objective's score for each of ``images`` (N, 3, H, W) in [0, 1], without transforms
    or gradients: e.g. to compare a visualization with natural photos."""
    images = check_images(images, "images", bounds=False)  # transformed views may step a rounding error outside
    objective = as_objective(objective)
    check_layers(model, objective.layers)
    scores = []
    with frozen(model), capture(model, objective.layers, detach=True) as seen, torch.no_grad():
        for chunk in images.split(batch_size):
            scores.append(objective(Evaluation(seen.activations, model(chunk), chunk)))
    return torch.cat(scores)
