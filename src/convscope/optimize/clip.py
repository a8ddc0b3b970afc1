"""Inverting CLIP: render an image whose CLIP image embedding points at a text prompt's
(Radford et al. 2021; the "inverting CLIP" of feature visualization, Goh et al. 2021).

The optional ``open_clip`` integration of :func:`~convscope.optimize.invert.invert_embedding`:
:func:`load_clip` builds an ``open_clip`` architecture by name and fills it from the user's
own weights file (``weights_only`` loading; nothing is downloaded), :func:`text_embedding`
encodes prompts, and :func:`invert_text` optimizes an image towards them. The image encoder
takes RGB in [0, 1] of any size, like every convscope model: it resizes to the tower's input
size (bicubic, as open_clip's preprocessing) and normalises with the checkpoint's own mean/std.
Install with ``pip install open_clip_torch`` (the ``clip`` extra).
"""

from __future__ import annotations

__all__ = ["Clip", "ClipImageEncoder", "invert_text", "load_clip", "text_embedding"]

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConvscopeError
from .visualize import Visualization


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise ConvscopeError("CLIP inversion needs open_clip: pip install open_clip_torch") from None
    return open_clip


class ClipImageEncoder(nn.Module):
    """An open_clip image tower taking (N, 3, H, W) RGB in [0, 1]; returns the (N, D) embedding."""

    def __init__(self, clip: nn.Module, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.clip, self.input_size = clip, tuple(size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bicubic", align_corners=False)
        return self.clip.encode_image((images - self.mean) / self.std)


@dataclass
class Clip:
    """A loaded CLIP model: ``image_encoder`` (a convscope model, [0, 1] in), the open_clip
    ``model`` and its ``tokenizer``."""

    image_encoder: ClipImageEncoder
    model: nn.Module
    tokenizer: object
    name: str


def load_clip(name: str, weights: str | Path, device: str | torch.device = "cpu") -> Clip:
    """Build open_clip architecture ``name`` (e.g. ``"ViT-B-32"``, ``"RN50"``) with the weights
    in the local file ``weights`` (loaded with ``weights_only=True``).

    >>> clip = load_clip("ViT-B-32", "ViT-B-32-openai.pt")
    """
    open_clip = _open_clip()
    path = Path(weights)
    if not path.is_file():
        raise ConvscopeError(f"CLIP weights file not found: {path}")
    if name not in open_clip.list_models():
        raise ConvscopeError(f"unknown open_clip model {name!r} (see open_clip.list_models())")
    try:
        model = open_clip.create_model(name, pretrained=str(path), device=device, weights_only=True)
    except Exception as error:  # a corrupt or mismatched checkpoint: say which, in one line
        raise ConvscopeError(
            f"{path}: not a {name} checkpoint ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from None
    model.eval()
    config = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = config.get("size", getattr(model.visual, "image_size", 224))
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = config.get("mean", getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = config.get("std", getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    encoder = ClipImageEncoder(model, size, mean, std).to(device).eval()
    return Clip(encoder, model, open_clip.get_tokenizer(name), name)


@torch.no_grad()
def text_embedding(clip: Clip, prompts: str | Sequence[str]) -> torch.Tensor:
    """The (N, D) text embeddings of ``prompts``."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or any(not p.strip() for p in prompts):
        raise ConvscopeError("give at least one non-empty text prompt")
    device = next(clip.model.parameters()).device
    return clip.model.encode_text(clip.tokenizer(prompts).to(device)).float()


def invert_text(clip: Clip, prompts: str | Sequence[str], *, size: int = 224, **options) -> Visualization:
    """Render one image per prompt whose CLIP image embedding has the highest cosine similarity
    to the prompt's text embedding (Fourier basis, decorrelated colours, the standard
    transforms; ``options`` as for :func:`~convscope.optimize.visualize.render`).

    >>> shown = invert_text(clip, "a photo of a cat", steps=256)
    """
    from .invert import invert_embedding

    return invert_embedding(clip.image_encoder, text_embedding(clip, prompts), size=size, **options)
