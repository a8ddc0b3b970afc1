"""Project one unit's activation back to pixels (Zeiler & Fergus 2014's layer-by-layer figures).

For each image, the gradient of one unit, activation[channel, y, x] of ``layer``, with
respect to the input, taken with the deconvnet backward rule for rectifiers (Zeiler &
Fergus 2014: g_in = relu(g_out)) or guided backpropagation (Springenberg et al. 2015),
from :func:`convscope.attribution.rectifiers.rectifier_rule`.

Deviation from the paper: Zeiler & Fergus reconstruct through a separate deconvnet with
switches recorded at max-pooling; the gradient under the deconvnet rule is that same
computation (max-pool backward routes through the recorded switches), so no second network
is built. Batched: image i projects its own unit; the units of different images do not
mix because the model runs in eval mode.
"""

from __future__ import annotations

__all__ = ["project_units"]

from typing import Sequence

import torch
from torch import nn

from ..checks import check_images
from ..errors import ConvscopeError
from ..hooks import capture, frozen
from ..layers import check_layers


def project_units(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    channels: Sequence[int],
    positions: Sequence[tuple[int, int]],
    rule: str = "deconvnet",
) -> torch.Tensor:
    """Pixel-space projection (N, 3, H, W) of unit (channels[i], positions[i]) in image i.

    Args:
        model: any image CNN.
        x: images (N, 3, H, W) in [0, 1].
        layer: dotted layer name with a spatial output (N, C, h, w).
        channels, positions: the unit of each image: channel and (y, x) in the feature map.
        rule: ``"deconvnet"`` (Zeiler & Fergus) or ``"guided"`` (guided backpropagation).

    >>> found = top_k_examples(model, folder, "blocks.3")
    >>> projection = project_units(model, images, "blocks.3", [7, 7], [(3, 4), (5, 1)])
    """
    from ..attribution.rectifiers import rectifier_rule

    x = check_images(x)
    if len(channels) != x.shape[0] or len(positions) != x.shape[0]:
        raise ConvscopeError(
            f"give one channel and one position per image: {x.shape[0]} images, "
            f"{len(channels)} channels, {len(positions)} positions"
        )
    (name,) = check_layers(model, [layer])
    x = x.detach().clone().requires_grad_(True)
    with frozen(model), capture(model, name) as seen, rectifier_rule(rule):
        model(x)
        acts = seen[name]
        if acts.ndim != 4:
            raise ConvscopeError(f"layer {layer!r} has no spatial map (output {tuple(acts.shape)})")
        rows = torch.arange(x.shape[0], device=acts.device)
        ys = torch.tensor([p[0] for p in positions], device=acts.device)
        xs = torch.tensor([p[1] for p in positions], device=acts.device)
        units = acts[rows, torch.tensor(list(channels), device=acts.device), ys, xs]
        (gradient,) = torch.autograd.grad(units.sum(), x)
    return gradient
