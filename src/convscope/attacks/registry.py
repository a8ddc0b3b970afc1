"""The registry of attacks read by :func:`convscope.attack`, the CLI, the report, the web app and the tests.

An entry is ``entry(model, x, labels, target, *, eps, generator, progress, **options)``
returning ``x_adv`` or ``(x_adv, queries)`` (queries: LongTensor[N] of model evaluations
per image, for black-box attacks). ``labels`` are class ids LongTensor[N]; ``target`` is
None (untargeted) or class ids LongTensor[N]; ``eps`` is the budget (the registry's
default when the caller gives none; None for attacks without one).

Metadata (defaults in brackets), given to ``@ATTACKS.register(name, ...)``:

* ``norm``: the distance the attack bounds or minimises: ``"linf"`` | ``"l2"`` | ``"l0"``;
* ``uses_eps`` [True]: takes a budget ``eps``; ``eps``: its default, in pixel units;
* ``deterministic`` [False]: no random draws (a batch equals its images one by one);
* ``threat`` [``"white-box"``]: or ``"black-box"`` (only queries the model's outputs);
* ``targeted`` [True]: supports a target class;
* ``interactive`` [False]: quick enough at its defaults for the web app's attack menu;
* ``wraps``: the public functions the entry forwards its ``**options`` to (their keyword
  parameters are the options :func:`convscope.attack` accepts); ``fixed``: parameters of
  those functions the entry sets itself;
* ``quick`` [{}]: the cheapest settings that still run the whole algorithm (tests, previews).
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import torch

from ..registry import Registry


class Attack(Protocol):
    """The contract of a registered attack entry (see the module notes): returns ``x_adv`` or
    ``(x_adv, queries)``; ``target`` is None or class ids; ``generator`` seeds every random draw."""

    __name__: str

    def __call__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        /,
        *,
        eps: float | None,
        generator: torch.Generator | None,
        progress: bool,
        **options: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


ATTACKS: Registry[Attack] = Registry(
    "attack",
    norm=None,
    uses_eps=True,
    eps=None,
    deterministic=False,
    threat="white-box",
    targeted=True,
    interactive=False,
    wraps=(),
    fixed=(),
    quick={},
)

#: Parameters the registry entry fills in itself (never user options).
_SET_BY_ENTRY = {"model", "black_box", "seed", "x", "y", "eps", "targeted", "generator", "progress"}


def attack_options(method: str) -> list[str] | None:
    """The options ``attack(..., method=method, **options)`` accepts, read from the entry's
    signature and the functions it wraps (None when one of them takes any ``**options``)."""
    entry = ATTACKS.entry(method)
    chain = (entry.function, *entry.meta["wraps"])
    skip = _SET_BY_ENTRY | set(entry.meta["fixed"]) | {"labels", "target"}
    names: list[str] = []
    for function in chain:
        for parameter in inspect.signature(function).parameters.values():
            plain = parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
            if plain and parameter.name not in skip and parameter.name not in names:
                names.append(parameter.name)
    last = inspect.signature(chain[-1]).parameters.values()
    return None if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in last) else names


__all__ = ["ATTACKS", "Attack", "attack_options"]
