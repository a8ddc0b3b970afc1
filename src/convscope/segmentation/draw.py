"""Segmentation masks drawn as coloured layers over images (torchvision's ``draw_segmentation_masks``)."""

from __future__ import annotations

__all__ = ["draw_masks", "prediction_figure"]

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..render import Panel, figure
from .data import IGNORE_INDEX, voc_palette


def draw_masks(images: torch.Tensor, masks: torch.Tensor, num_classes: int, alpha: float = 0.55) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1]: each class except background (0) and ignore (255) painted in its VOC colour."""
    from torchvision.utils import draw_segmentation_masks

    colours = voc_palette(num_classes)[1:]
    drawn = []
    for image, mask in zip(images.detach().cpu(), masks.detach().cpu()):
        layers = F.one_hot(mask.clamp(0, num_classes - 1), num_classes).permute(2, 0, 1).bool()[1:]
        layers &= (mask != IGNORE_INDEX)[None]
        picture = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        drawn.append(draw_segmentation_masks(picture, layers, alpha=alpha, colors=colours).float() / 255)
    return torch.stack(drawn)


def prediction_figure(
    images: torch.Tensor,
    predicted: torch.Tensor,
    classes: Sequence[str],
    truth: torch.Tensor | None = None,
    path: str | Path | None = None,
    title: str | None = None,
    names: Sequence[str] = (),
) -> Image.Image:
    """Rows of image | truth (if given) | prediction, masks over the images, the class colours
    as a legend under them. ``names`` titles each row's image (e.g. its file); each prediction
    is titled with the share of its pixels in each class, and with its pixel accuracy when
    ``truth`` is given."""
    panels = []
    for index in range(images.shape[0]):
        panels.append(Panel(images[index], names[index] if index < len(names) else "image"))
        if truth is not None:
            panels.append(
                Panel(draw_masks(images[index : index + 1], truth[index : index + 1], len(classes))[0], "truth")
            )
        mask = predicted[index].detach().cpu()
        shares = torch.bincount(mask.flatten().clamp(0, len(classes) - 1), minlength=len(classes)).float()
        shares = shares / mask.numel()
        found = ", ".join(f"{classes[c]} {float(shares[c]):.0%}" for c in shares.argsort(descending=True) if shares[c])
        caption = f"prediction: {found}"
        if truth is not None:
            known = truth[index].cpu() != IGNORE_INDEX
            accuracy = float((mask[known] == truth[index].cpu()[known]).float().mean()) if known.any() else float("nan")
            caption = f"prediction (pixel accuracy {accuracy:.2f}): {found}"
        panels.append(Panel(draw_masks(images[index : index + 1], mask[None], len(classes))[0], caption))
    legend = list(zip(classes[1:], voc_palette(len(classes))[1:]))
    columns = 3 if truth is not None else 2
    return figure(panels, path, columns=columns, suptitle=title, panel_size=2.2, legend=legend)
