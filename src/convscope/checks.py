"""Input checks shared by every method: one clear error instead of a deep stack trace."""

from __future__ import annotations

import torch

from .errors import ConvscopeError


def check_images(x: torch.Tensor, name: str = "x", channels: int | None = 3) -> torch.Tensor:
    """Require a float tensor (N, C, H, W) of finite values in [0, 1]; return it."""
    if not isinstance(x, torch.Tensor):
        raise ConvscopeError(f"{name} must be a torch.Tensor of shape (N, 3, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ConvscopeError(f"{name} must have shape (N, 3, H, W), got {tuple(x.shape)}"
                             + (" (add a batch dimension: x[None])" if x.ndim == 3 else ""))
    if not x.dtype.is_floating_point:
        raise ConvscopeError(f"{name} must be a float tensor in [0, 1], got {x.dtype} (divide uint8 images by 255)")
    if channels is not None and x.shape[1] != channels:
        raise ConvscopeError(f"{name} must have {channels} channels, got {x.shape[1]}")
    if not torch.isfinite(x).all():
        raise ConvscopeError(f"{name} contains NaN or infinite values")
    low, high = x.min().item(), x.max().item()
    if low < -1e-6 or high > 1 + 1e-6:
        raise ConvscopeError(f"{name} must lie in [0, 1] (normalisation happens inside the model), got [{low:.3g}, {high:.3g}]")
    return x


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (cpu if it has none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")
