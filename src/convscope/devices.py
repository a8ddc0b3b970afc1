"""Device names: ``auto | cpu | cuda | cuda:N | mps``."""

from __future__ import annotations

__all__ = ["DEVICE_CHOICES", "resolve_device"]

import torch

from .errors import ConvscopeError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Turn a device name into a ``torch.device``; ``auto`` picks cuda, then mps, then cpu."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConvscopeError(f"device {name!r} requested but CUDA is not available on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConvscopeError("device 'mps' requested but MPS is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConvscopeError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)}") from None
