"""Transfer attacks: iterative FGSM variants that fool models they never saw, and the transfer matrix.

One iterative L∞ attack (:func:`transfer_fgsm`) with three switches that combine freely:

* momentum (MI-FGSM, Dong et al. 2018): ``g ← μ g + ∇ / ||∇||_1`` (per image, μ = 1), step ``α sign(g)``;
* input diversity (DI-FGSM, Xie et al. 2019): with probability ``p`` (0.5) the gradient is taken
  through a random resize-and-pad of the input. Deviation: the image is shrunk to a random side in
  ``[0.9 H, H)`` and zero-padded back to ``H`` at a random offset (the paper enlarges 299 → [299, 330)
  and pads to 330), so that models with a fixed input size can be attacked;
* translation invariance (TI-FGSM, Dong et al. 2019): the gradient is convolved with a Gaussian
  kernel (``kernel`` pixels wide, ±3 σ; the paper uses 15 at 299 px) before the update.

Each step is one forward+backward of the source model; ``α = eps / steps`` (the papers' choice).
:func:`transfer_matrix` attacks every source model and scores every target on the results.
"""

from __future__ import annotations

__all__ = ["diverse_input", "gaussian_kernel", "transfer_fgsm", "transfer_matrix", "TransferMatrix"]

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from ..checks import checks_images
from ..errors import ConvscopeError
from ._common import check_eps, cross_entropy, labels_for, progress_bar
from .gradient import _freeze
from .registry import ATTACKS


def gaussian_kernel(size: int) -> torch.Tensor:
    """(size, size) Gaussian over ±3 σ, summing to 1 (TI's smoothing kernel)."""
    if size < 1 or size % 2 == 0:
        raise ConvscopeError(f"the TI kernel size must be a positive odd number, got {size}")
    t = torch.linspace(-3, 3, size)
    line = torch.exp(-0.5 * t * t)
    kernel = line[:, None] * line[None, :]
    return kernel / kernel.sum()


def diverse_input(
    x: torch.Tensor, probability: float, generator: torch.Generator | None, low: float = 0.9
) -> torch.Tensor:
    """DI's transform: with ``probability`` shrink to a random side in [low·H, H) and pad back at a random offset."""
    height, width = x.shape[-2:]
    if float(torch.rand((), generator=generator, device=x.device)) >= probability:
        return x
    smallest = max(int(math.floor(low * min(height, width))), 1)
    side = (
        int(torch.randint(smallest, min(height, width), (1,), generator=generator, device=x.device))
        if smallest < min(height, width)
        else smallest
    )
    shrunk = F.interpolate(x, size=(side, side), mode="nearest")
    top = int(torch.randint(0, height - side + 1, (1,), generator=generator, device=x.device))
    left = int(torch.randint(0, width - side + 1, (1,), generator=generator, device=x.device))
    return F.pad(shrunk, (left, width - side - left, top, height - side - top))


@checks_images
def transfer_fgsm(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float = 16 / 255,
    *,
    steps: int = 10,
    alpha: float | None = None,
    momentum: float = 1.0,
    diversity: float = 0.0,
    kernel: int | None = None,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    eval_mode: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Iterative FGSM with momentum (MI), input diversity (DI) and/or a smoothed gradient (TI).

    Args:
        model: the source classifier (images in [0, 1] -> logits); x: (N, C, H, W); y: labels
            (or targets with ``targeted``).
        eps: L∞ budget (16/255 in the papers); steps: iterations (10); alpha: step (eps / steps).
        momentum: μ (1.0: MI-FGSM; 0: plain I-FGSM); diversity: DI's probability p (0.5 in the paper;
            0 turns DI off); kernel: TI's Gaussian kernel size (odd; None turns TI off).

    Returns:
        x_adv (N, C, H, W) in [0, 1].

    >>> x_adv = transfer_fgsm(source, x, y, 16/255, momentum=1.0, diversity=0.5, kernel=7)   # MI-DI-TI
    """
    eps = check_eps(eps)
    if steps < 1 or not 0 <= diversity <= 1 or momentum < 0:
        raise ConvscopeError("transfer attacks need steps >= 1, 0 <= diversity <= 1 and momentum >= 0")
    alpha = eps / steps if alpha is None else check_eps(alpha, "alpha")
    x = x.detach()
    smoothing = None
    if kernel is not None:
        smoothing = gaussian_kernel(kernel).to(x)[None, None].expand(x.shape[1], 1, kernel, kernel)
    with _freeze(model, eval_mode):
        y = labels_for(model, x, y)
        adv, velocity = x.clone(), torch.zeros_like(x)
        with progress_bar(steps, "transfer-fgsm", progress) as advance:
            for _ in range(steps):
                point = adv.detach().requires_grad_(True)
                with torch.enable_grad():
                    loss = cross_entropy(model(diverse_input(point, diversity, generator)), y).sum()
                    (grad,) = torch.autograd.grad(-loss if targeted else loss, point)
                if smoothing is not None:
                    grad = F.conv2d(grad, smoothing, padding=kernel // 2, groups=x.shape[1])
                velocity = momentum * velocity + grad / grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)
                adv = (x + (adv + alpha * velocity.sign() - x).clamp(-eps, eps)).clamp(0, 1)
                advance(1)
    return adv


def _entry(momentum: float, diversity: float, kernel: int | None):
    def entry(model, x, labels, target, *, eps=None, generator=None, progress=False, **options):
        options = {"momentum": momentum, "diversity": diversity, "kernel": kernel, **options}
        goal = labels if target is None else target
        return transfer_fgsm(
            model, x, goal, eps, targeted=target is not None, generator=generator, progress=progress, **options
        )

    return entry


_META = dict(norm="linf", eps=16 / 255, wraps=(transfer_fgsm,), quick={"steps": 2})
ATTACKS.add("mi_fgsm", _entry(1.0, 0.0, None), **_META)
ATTACKS.add("di_fgsm", _entry(0.0, 0.5, None), **_META)
ATTACKS.add("ti_fgsm", _entry(0.0, 0.0, 7), **_META)


@dataclass
class TransferMatrix:
    """``rate[i][j]``: fraction of the images target ``j`` classifies correctly that the examples made
    on source ``i`` fool (the diagonal is the white-box success rate); ``counted[j]`` those images."""

    names: list[str]
    rate: list[list[float]]
    counted: list[int]
    method: str
    eps: float

    def rows(self) -> list[dict]:
        return [
            {"source": s, **{t: self.rate[i][j] for j, t in enumerate(self.names)}} for i, s in enumerate(self.names)
        ]

    def write_csv(self, path) -> None:
        import csv

        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["source", *self.names])
            writer.writeheader()
            writer.writerows(self.rows())

    def plot(self, path) -> None:
        """Heatmap: rows = source, columns = target (with how many images it classifies correctly:
        the rate's denominator), the success rate written in each cell; "n/a" where the target got
        no image right (no rate)."""
        from ..render import pyplot, save_figure, wrap

        plt = pyplot()

        k = len(self.names)
        width = 3.0 + 1.3 * k
        figure, axis = plt.subplots(figsize=(width, 2.0 + 1.1 * k))
        image = axis.imshow(self.rate, vmin=0, vmax=1, cmap="magma")
        for i in range(k):
            for j in range(k):
                value = self.rate[i][j]
                if value != value:  # NaN: the target classified none of the images correctly
                    axis.text(j, i, "n/a", ha="center", va="center", color="dimgray")
                    continue
                axis.text(
                    j, i, f"{100 * value:.0f}%", ha="center", va="center", color="black" if value > 0.6 else "white"
                )
        targets = [f"{name}\n({count} correct)" for name, count in zip(self.names, self.counted)]
        axis.set_xticks(range(k), targets, rotation=30, ha="right")
        axis.set_yticks(range(k), self.names)
        axis.set_xlabel("target (evaluated)")
        axis.set_ylabel("source (attacked)")
        figure.suptitle(wrap(f"{self.method}, ε = {255 * self.eps:.3g}/255: transfer success rate", width, 11))
        bar = figure.colorbar(image, ax=axis, fraction=0.046)
        bar.set_label("success rate (fooled / correct)", fontsize=9)
        figure.tight_layout()
        save_figure(figure, path)
        plt.close(figure)


def transfer_matrix(
    models: Mapping[str, torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    method: str = "mi_fgsm",
    eps: float = 16 / 255,
    seed: int = 0,
    **options,
) -> TransferMatrix:
    """Attack ``x`` on every model with ``method`` and evaluate every model on every result.

    ``y`` are the true labels (needed: the models disagree on predictions). Returns :class:`TransferMatrix`.
    """
    from . import attack

    if len(models) < 2:
        raise ConvscopeError("a transfer matrix needs at least two models")
    y = torch.as_tensor(y, device=x.device).long()
    names = list(models)
    correct = {}
    for name, model in models.items():
        with _freeze(model, True), torch.no_grad():
            correct[name] = model(x).argmax(-1) == y
    rate = []
    for source in names:
        adv = attack(models[source], x, y, method=method, eps=eps, seed=seed, **options).x_adv
        row = []
        for target in names:
            with _freeze(models[target], True), torch.no_grad():
                fooled = models[target](adv).argmax(-1) != y
            mask = correct[target]
            row.append(float(fooled[mask].float().mean()) if mask.any() else float("nan"))
        rate.append(row)
    return TransferMatrix(names, rate, [int(correct[n].sum()) for n in names], method, eps)
