"""Sanity checks for saliency maps (Adebayo et al. 2018): do the maps depend on the weights?

Model-parameter randomization test. The layers are grouped from the logits down (the
top-level children of the network, ``nn.Sequential``/``ModuleList`` containers split into
their children: on EfficientNet-Lite0 ``classifier, conv_head, blocks.6, ..., blocks.0,
conv_stem``). Two schemes:

* ``"cascading"``: step k re-initialises groups 1..k (top-down, cumulative), as the paper;
* ``"independent"``: step k re-initialises group k alone.

Re-initialisation: every ``Conv``/``Linear`` in the group gets its own
``reset_parameters()`` (PyTorch's default Kaiming-uniform), under ``seed``; BatchNorm
parameters and running statistics are kept (the paper re-initialises weights of conv and
fully connected layers). It happens on a deep copy: the user's model is never modified.

Similarity to the map of the trained model, per method, step and image: the Spearman rank
correlation and SSIM (scikit-image, data range 1) of the absolute maps (per-channel maps
summed over |channels|), each scaled to [0, 1] by its maximum -- the paper's "absolute
value" variant. A method passes the check when the similarity falls as layers are
randomized; the paper finds that gradients, SmoothGrad, IG and Grad-CAM pass, and guided
backprop and guided Grad-CAM stay visually similar (they fail).
"""

from __future__ import annotations

__all__ = ["randomization_groups", "reinitialize", "sanity_check", "sanity_figure", "SanityResult", "similarity"]

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..checks import check_images, model_device
from ..errors import ConvscopeError


def randomization_groups(model: nn.Module) -> list[str]:
    """Names of the layer groups with conv/linear weights, from the output down to the input."""
    root = getattr(model, "network", model)
    prefix = "network." if root is not model else ""
    groups: list[str] = []
    for name, child in root.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            groups += [f"{prefix}{name}.{sub}" for sub, _ in child.named_children()]
        else:
            groups.append(f"{prefix}{name}")
    modules = dict(model.named_modules())
    weighted = [g for g in groups if any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in modules[g].modules())]
    return weighted[::-1]


def reinitialize(model: nn.Module, group: str) -> None:
    """``reset_parameters()`` on every Conv2d/Linear inside ``group`` (of a copy!)."""
    for module in dict(model.named_modules())[group].modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()


def _absolute(heat: torch.Tensor) -> np.ndarray:
    heat = heat.detach().float().abs()
    heat = heat.sum(dim=1) if heat.shape[1] != 1 else heat[:, 0]
    heat = heat / heat.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
    return heat.cpu().numpy()


def similarity(reference: torch.Tensor, other: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(Spearman, SSIM) per image between two maps (N, C, H, W), on scaled absolute values."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    first, second = _absolute(reference), _absolute(other)
    # a constant map (e.g. Grad-CAM killed by the ReLU) has no rank order: correlation 0
    rho = np.array(
        [
            0.0 if np.ptp(a) == 0 or np.ptp(b) == 0 else spearmanr(a.ravel(), b.ravel()).statistic
            for a, b in zip(first, second)
        ]
    )
    ssim = np.array([structural_similarity(a, b, data_range=1.0) for a, b in zip(first, second)])
    return rho, ssim


@dataclass
class SanityResult:
    """Similarity of each method's map to the trained model's map as layers are randomized.

    Attributes:
        scheme: ``"cascading"`` or ``"independent"``.
        methods: the attribution methods checked.
        steps: the group randomized at each step (cascading: the lowest group so far).
        spearman: (methods, steps, N) rank correlations with the original map.
        ssim: (methods, steps, N) structural similarity with the original map.
        maps: method -> list of maps (original first, then one per step), first image only.
        model_name: the model checked; ``label``: the class explained for the first image.
    """

    scheme: str
    methods: list[str]
    steps: list[str]
    spearman: np.ndarray
    ssim: np.ndarray
    maps: dict[str, list[torch.Tensor]] = field(repr=False, default_factory=dict)
    model_name: str = ""
    label: str = ""

    def rows(self) -> list[tuple[str, str, float, float]]:
        """(method, step, mean Spearman, mean SSIM) over the images."""
        return [
            (method, step, float(self.spearman[i, j].mean()), float(self.ssim[i, j].mean()))
            for i, method in enumerate(self.methods)
            for j, step in enumerate(self.steps)
        ]


def sanity_check(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    methods: Sequence[str] = ("saliency", "gradcam"),
    scheme: str = "cascading",
    groups: Sequence[str] | None = None,
    seed: int = 0,
    options: dict[str, dict] | None = None,
    progress: bool = True,
) -> SanityResult:
    """Run the model-parameter randomization test of Adebayo et al. 2018.

    Args:
        model: the trained classifier (left untouched; a deep copy is randomized).
        x: (N, 3, H, W) in [0, 1].
        target: explained class; default the trained model's prediction, kept fixed for all steps.
        methods: registered attribution methods.
        scheme: ``"cascading"`` or ``"independent"``.
        groups: layer groups to randomize, top first (default :func:`randomization_groups`).
        seed: seed of the re-initialisation (and of noisy methods).
        options: per-method options, e.g. ``{"integrated_gradients": {"steps": 16}}``.
        progress: show a progress bar.
    """
    from ..progress import track

    from . import METHODS, STOCHASTIC, attribute
    from .noise import fixed_targets

    if scheme not in ("cascading", "independent"):
        raise ConvscopeError(f"scheme must be 'cascading' or 'independent', got {scheme!r}")
    for method in methods:
        METHODS.get(method)
    x = check_images(x)
    x = x.to(model_device(model))
    groups = list(groups) if groups is not None else randomization_groups(model)
    options = options or {}

    def settings(method: str) -> dict:
        extra = {"seed": seed} if method in STOCHASTIC else {}
        return {**extra, **options.get(method, {})}

    from ..hooks import frozen

    with frozen(model):
        ids = fixed_targets(model, x, target)
    original = {m: attribute(model, x, ids, method=m, **settings(m)) for m in methods}
    maps = {m: [original[m][0].cpu()] for m in methods}
    spearman = np.zeros((len(methods), len(groups), x.shape[0]))
    ssim = np.zeros_like(spearman)
    randomized = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step, group in enumerate(track(groups, f"{scheme} randomization", progress)):
            if scheme == "independent":
                randomized = copy.deepcopy(model)
            reinitialize(randomized, group)
            for row, method in enumerate(methods):
                heat = attribute(randomized, x, ids, method=method, **settings(method))
                spearman[row, step], ssim[row, step] = similarity(original[method], heat)
                maps[method].append(heat[0].cpu())
    from ..targets import class_name

    steps = [g.removeprefix("network.") for g in groups]
    label = f"{class_name(getattr(model, 'labels', None), int(ids[0]))} ({int(ids[0])})"
    name = getattr(model, "name", type(model).__name__)
    return SanityResult(scheme, list(methods), steps, spearman, ssim, maps, name, label)


def sanity_figure(
    result: SanityResult,
    image: torch.Tensor,
    path: str | Path | None = None,
    dpi: int | None = None,
    columns: int = 6,
):
    """Each method's maps, original first, then one per randomization step, wrapped at
    ``columns`` (a method starts a new row); each step titled with its Spearman ρ and SSIM to the
    original (an all-zero map, which has no rank correlation, is said so). Maps are drawn as
    |map| summed over colour channels, the way :func:`convscope.attribution.display_mode` scales
    the method (gradients by their 99.5th percentile, CAMs min-max). Returns the picture at
    ``dpi`` (default: the screen's)."""
    from ..render import SCREEN_DPI, Panel, figure
    from . import display_mode

    columns = max(1, min(columns, len(result.steps) + 1))
    panels = []
    for row, method in enumerate(result.methods):
        scaling = "minmax" if display_mode(method) == "minmax" else "abs"
        for column, heat in enumerate(result.maps[method]):
            if column == 0:
                title = f"{method}\noriginal"
            elif not bool(heat.abs().amax() > 0):
                title = f"{result.steps[column - 1]}\nall-zero map"
            else:  # the number that matters: how similar the map stayed (1 = unchanged)
                rho = float(result.spearman[row, column - 1].mean())
                ssim = float(result.ssim[row, column - 1].mean())
                title = f"{result.steps[column - 1]}\nρ {rho:.2f}, SSIM {ssim:.2f}"
            panels.append(Panel(heat.abs().sum(dim=0, keepdim=True), title, cmap="gray", mode=scaling))
        panels += [Panel(None)] * (-len(result.maps[method]) % columns)  # blank: the next method starts a row
    subject = ", ".join(part for part in (result.model_name, result.label) if part)
    return figure(
        panels,
        path,
        columns=columns,
        panel_size=2.0,
        suptitle=f"{subject + ': ' if subject else ''}sanity check ({result.scheme} randomization, top layers "
        f"first; ρ = Spearman rank correlation with the original map; |map|: gradients / p99.5, CAMs min-max)",
        dpi=dpi or SCREEN_DPI,
    )
