"""The registry of attacks read by :func:`convscope.attack`, the CLI and the report.

An entry is ``entry(model, x, labels, target, *, eps, generator, progress, **options)``
returning ``x_adv`` or ``(x_adv, queries)`` (queries: LongTensor[N] of model evaluations
per image, for black-box attacks). ``labels`` are class ids LongTensor[N]; ``target`` is
None (untargeted) or class ids LongTensor[N]; ``eps`` is None for the method's default.
"""

from __future__ import annotations

from ..registry import Registry

ATTACKS: Registry = Registry("attack")
