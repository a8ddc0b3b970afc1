"""Weights as pictures: a conv layer's filters, or a linear layer's rows, as image tiles.

The first layer of an image CNN is shown in colour, each filter (3, kh, kw) one RGB tile
(Krizhevsky et al. 2012, fig. 3; Zeiler & Fergus 2014, fig. 6). Deeper filters (I > 3 input
channels) have no colour meaning; they are shown either one grey tile per (filter, input
channel) pair (``mode="channels"``) or as the L2 norm over input channels, one tile per
filter (``mode="norm"``). A linear layer's weight rows are reshaped to the input's image
shape (an MLP's first layer on 8x8 digits gives 8x8 'templates').

Convention: each tile is scaled on its own, symmetrically about zero, 0.5 + w / (2 max|w|)
(zero weight = mid grey), so the sign is readable; ``norm`` tiles are scaled to [0, 1] by
their own maximum. This is the usual display choice (e.g. cs231n's filter plots use min-max
per filter, which hides the sign; we keep zero at grey instead).
"""

from __future__ import annotations

__all__ = ["channel_weight", "filter_tiles", "layer_weight", "MODES", "row_tiles", "weight_grid", "weight_tiles"]

import torch
from PIL import Image
from torch import nn

from ..errors import ConvscopeError
from ..images import to_uint8
from ..layers import find_layer

MODES = ("auto", "rgb", "channels", "norm")


def layer_weight(model: nn.Module, layer: str) -> torch.Tensor:
    """The weight tensor of a layer: its own ``weight`` (conv or linear), or the ``weight`` of the
    last conv/linear inside it (so block names work: ``blocks.1`` -> its last convolution)."""
    module = find_layer(model, layer)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module.weight.detach()
    inner = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not inner:
        raise ConvscopeError(f"layer {layer!r} ({type(module).__name__}) has no convolution or linear weight")
    return inner[-1].weight.detach()


def channel_weight(model: nn.Module, layer: str, channel: int) -> tuple[str, torch.Tensor] | None:
    """The weights that make output ``channel`` of ``layer``: (module name, weight[channel]).

    The layer's own conv/linear, else the last conv/linear inside it, else (a norm or
    activation layer) the nearest conv/linear before it in definition order; ``None`` when
    there is none or it has fewer outputs than ``channel``.
    """
    target = find_layer(model, layer)
    weighted = (nn.Conv2d, nn.Linear)
    named = [(name, module) for name, module in model.named_modules() if name]
    inside = [(n, m) for n, m in named if isinstance(m, weighted) and any(m is x for x in target.modules())]
    position = next(i for i, (_, module) in enumerate(named) if module is target)
    before = [(n, m) for n, m in named[:position] if isinstance(m, weighted)]
    chosen = inside[-1] if inside else before[-1] if before else None
    if chosen is None or channel >= chosen[1].weight.shape[0]:
        return None
    return chosen[0].removeprefix("network."), chosen[1].weight.detach()[channel]


def _signed_tiles(tiles: torch.Tensor) -> torch.Tensor:
    scale = tiles.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (tiles.ndim - 1)))
    return (0.5 + tiles / (2 * scale)).clamp(0, 1)


def filter_tiles(weight: torch.Tensor, mode: str = "auto", max_filters: int = 64, max_inputs: int = 16) -> torch.Tensor:
    """Conv filters (O, I, kh, kw) -> display tiles (T, 3, kh, kw) in [0, 1].

    Args:
        weight: a conv weight.
        mode: ``rgb`` (needs I = 3: one colour tile per filter), ``channels`` (one grey tile per
            filter and input channel, filter-major), ``norm`` (L2 norm over input channels, one
            tile per filter), ``auto`` (``rgb`` when I = 3, else ``norm``; depthwise filters, I = 1,
            are shown signed, one grey tile each).
        max_filters: first filters shown; max_inputs: first input channels in ``channels`` mode.
    """
    if mode not in MODES:
        raise ConvscopeError(f"unknown weights mode {mode!r}; choose from {', '.join(MODES)}")
    if weight.ndim != 4:
        raise ConvscopeError(f"expected a conv weight (O, I, kh, kw), got shape {tuple(weight.shape)}")
    weight = weight.detach().float().cpu()[:max_filters]
    inputs = weight.shape[1]
    if mode == "auto":
        mode = "rgb" if inputs == 3 else "channels" if inputs == 1 else "norm"
    if mode == "rgb":
        if inputs != 3:
            raise ConvscopeError(f"rgb mode needs filters with 3 input channels, these have {inputs}")
        return _signed_tiles(weight)
    if mode == "channels":
        tiles = _signed_tiles(weight[:, :max_inputs].reshape(-1, 1, *weight.shape[-2:]))
        return tiles.expand(-1, 3, -1, -1)
    norm = weight.norm(dim=1, keepdim=True)
    return (norm / norm.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)).expand(-1, 3, -1, -1)


def row_tiles(weight: torch.Tensor, shape: tuple[int, ...], max_rows: int = 64) -> torch.Tensor:
    """Linear weight rows (O, D) -> tiles (T, 3, h, w): each row reshaped to ``shape`` = (h, w)
    (grey) or (C, h, w) with C in (1, 3); signed scaling, zero = grey."""
    if weight.ndim != 2:
        raise ConvscopeError(f"expected a linear weight (O, D), got shape {tuple(weight.shape)}")
    shape = tuple(shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or shape[0] * shape[1] * shape[2] != weight.shape[1]:
        raise ConvscopeError(f"cannot show rows of length {weight.shape[1]} as images of shape {shape}")
    tiles = _signed_tiles(weight.detach().float().cpu()[:max_rows].reshape(-1, *shape))
    return tiles.expand(-1, 3, -1, -1)


def weight_tiles(
    model: nn.Module,
    layer: str,
    mode: str = "auto",
    shape: tuple[int, ...] | None = None,
    max_filters: int = 64,
    max_inputs: int = 16,
) -> torch.Tensor:
    """A layer's weights as display tiles (T, 3, h, w) in [0, 1] (conv filters or linear rows).

    >>> tiles = weight_tiles(model, "conv_stem")      # 32 colour 3x3 filters
    >>> weight_grid(tiles).save("filters.png")
    """
    weight = layer_weight(model, layer)
    if weight.ndim == 2:
        if shape is None:
            raise ConvscopeError(f"layer {layer!r} is linear: give the image shape of its input rows (e.g. 8x8)")
        return row_tiles(weight, shape, max_filters)
    return filter_tiles(weight, mode, max_filters, max_inputs)


def weight_grid(
    tiles: torch.Tensor, columns: int | None = None, tile_side: int = 48, title: str = "", numbered: bool = False
) -> Image.Image:
    """Tiles (T, 3, h, w) -> one picture, each tile enlarged (nearest) to about ``tile_side`` px
    with a white gap (filters are tiny: 3x3 or 7x7), laid out near-square (about 4:3) unless
    ``columns`` is given; ``title`` above it and ``numbered`` filter ids under each tile."""
    import math

    from PIL import ImageDraw
    from torchvision.utils import make_grid

    from ..render import _font, annotate

    scale = max(1, tile_side // max(tiles.shape[-2:]))
    tiles = tiles.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    columns = columns or max(1, min(len(tiles), math.ceil(math.sqrt(len(tiles) * 4 / 3))))
    if not numbered:
        return annotate(Image.fromarray(to_uint8(make_grid(tiles, nrow=columns, padding=2, pad_value=1.0))), title)
    gap = 14  # room for the id under each tile
    height, width = tiles.shape[-2:]
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * (width + 4), rows * (height + gap + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        left, top = column * (width + 4) + 2, row * (height + gap + 4) + 2
        sheet.paste(Image.fromarray(to_uint8(tile)), (left, top))
        draw.text((left + 1, top + height + 1), str(index), fill=(60, 60, 60), font=_font(10))
    return annotate(sheet, title)
