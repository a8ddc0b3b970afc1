"""Model state that methods must leave as they found it: :func:`frozen` (eval mode, weights not
requiring grad, both restored on exit). A module of its own, below :mod:`convscope.layers` and
:mod:`convscope.hooks`, so that both can use it without importing each other."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["frozen"]


@contextlib.contextmanager
def frozen(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode with parameters not requiring grad; restore both on exit.

    The user's model comes back with the same ``training`` flag on every module and the
    same ``requires_grad`` on every parameter, whatever the block does or raises.
    """
    training = [(module, module.training) for module in model.modules()]
    requires = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        if eval_mode:
            model.eval()
        for parameter, _ in requires:
            parameter.requires_grad_(False)
        yield model
    finally:
        for module, flag in training:
            module.training = flag
        for parameter, flag in requires:
            parameter.requires_grad_(flag)
