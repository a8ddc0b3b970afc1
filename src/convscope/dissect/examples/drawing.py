"""Pictures of mined examples: a patch next to its image with the receptive-field box
(:func:`example_strip`), one row of patches per channel (:func:`channel_sheet`, Zeiler &
Fergus' figure 2 layout)."""

from __future__ import annotations

__all__ = ["channel_sheet", "draw_box", "example_strip", "tile"]

from typing import Sequence

import torch
from PIL import Image, ImageDraw

from ...images import to_uint8
from .types import TopExamples


def draw_box(image: torch.Tensor, box: tuple[int, int, int, int], colour=(255, 40, 40), width: int = 2) -> Image.Image:
    """The image (3, H, W) as a PIL image with the box (top, left, bottom, right) drawn."""
    picture = Image.fromarray(to_uint8(image))
    top, left, bottom, right = box
    ImageDraw.Draw(picture).rectangle([left, top, right - 1, bottom - 1], outline=colour, width=width)
    return picture


def tile(picture: Image.Image, side: int) -> Image.Image:
    scale = side / max(picture.size)
    resized = picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
        Image.Resampling.NEAREST if scale > 2 else Image.Resampling.BILINEAR,
    )
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(resized, ((side - resized.width) // 2, (side - resized.height) // 2))
    return canvas


def example_strip(
    found: Sequence[tuple[torch.Tensor, torch.Tensor, tuple]],
    side: int = 96,
    context: bool = True,
    title: str = "",
    labels: Sequence[str] = (),
) -> Image.Image:
    """One row per example: the receptive-field patch (enlarged) next to the whole image with the
    box drawn (``context=False``: the patches alone, in one row)."""
    if not found:
        return Image.new("RGB", (side, side), (255, 255, 255))
    if not context:
        strip = Image.new("RGB", (len(found) * (side + 2), side), (255, 255, 255))
        for i, (patch, _, _) in enumerate(found):
            strip.paste(tile(Image.fromarray(to_uint8(patch)), side), (i * (side + 2), 0))
        return strip
    sheet = Image.new("RGB", (2 * side + 6, len(found) * (side + 4)), (255, 255, 255))
    for i, (patch, image, box) in enumerate(found):
        sheet.paste(tile(Image.fromarray(to_uint8(patch)), side), (0, i * (side + 4)))
        sheet.paste(tile(draw_box(image, box, width=max(2, image.shape[-1] // 60)), side), (side + 6, i * (side + 4)))
    if title or labels:
        from ...render import annotate

        return annotate(sheet, title, labels, side + 4)
    return sheet


def channel_sheet(
    result: TopExamples, layer: str, channels: Sequence[int], side: int = 64, title: str | None = None
) -> Image.Image:
    """A grid with one row per channel and its k patches (Zeiler & Fergus' figure 2 layout), each
    row labelled with its channel id and top activation, titled with the layer."""
    from ...render import annotate

    channels = list(channels)
    rows = [example_strip(result.patches(layer, c), side, context=False) for c in channels]
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, len(rows) * (side + 4)), (255, 255, 255))
    for i, row in enumerate(rows):
        sheet.paste(row, (0, i * (side + 4)))
    values = result[layer].values
    labels = [f"ch {c}  max {float(values[c, 0]):.3g}" for c in channels]
    heading = (
        title
        if title is not None
        else f"{layer}: top-{values.shape[1]} dataset examples per channel ({result.seen} images)"
    )
    return annotate(sheet, heading, labels, side + 4)
