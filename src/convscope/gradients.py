"""The input gradient that every gradient method shares (attribution maps and attacks alike).

``input_gradient(model, x, score)`` is ``d sum(score(model(x))) / dx``: one forward and one
backward pass for the whole batch. Images are independent in eval mode, so the gradient of the
summed scores is every image's own gradient. ``score`` maps the model's output to one value per
image (a class logit, a loss) or to a scalar; the caller decides what is differentiated, this
module only how.
"""

from __future__ import annotations

from typing import Callable

import torch

Score = Callable[[torch.Tensor], torch.Tensor]


def input_gradient(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, score: Score) -> torch.Tensor:
    """``d sum(score(model(x))) / dx``, shaped like ``x``; ``x`` itself is left untouched (detached copy).

    >>> grad = input_gradient(model, x, lambda logits: logits[:, 285])
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(score(model(x)).sum(), x)
    return grad


__all__ = ["Score", "input_gradient"]
