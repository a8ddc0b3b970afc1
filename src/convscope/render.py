"""Pictures from tensors: the one rendering module shared by the CLI, report and web app.

Methods return raw tensors; everything that is only for display (normalising a map,
upsampling it, colouring it, laying panels out) lives here.
"""

from __future__ import annotations

__all__ = [
    "annotate",
    "bar_chart",
    "colorize",
    "colour_scale",
    "figure",
    "figure_to_image",
    "normalize_map",
    "overlay",
    "overlay_with_bar",
    "Panel",
    "png_bytes",
    "PRINT_DPI",
    "pyplot",
    "save_figure",
    "save_picture",
    "upsample",
    "VECTOR_SUFFIXES",
]

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .filters import resize_map
from .images import to_uint8


def pyplot():
    """matplotlib.pyplot on the Agg backend (no windows, works headless)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


#: vector formats written straight from matplotlib (print at any resolution).
VECTOR_SUFFIXES = (".pdf", ".svg")
#: dots per inch of every raster figure written to a file (recorded in the PNG): a figure's size
#: in inches is its printed size, sharp at print resolution.
PRINT_DPI = 300
#: dots per inch of the pictures returned for a screen (the report, the web app, notebooks).
SCREEN_DPI = 100


def save_figure(fig, path: str | Path, dpi: int = PRINT_DPI) -> Path:
    """Write a matplotlib figure to ``path`` (creating its folder): ``.pdf``/``.svg`` as vector
    graphics with the text kept as text (editable, searchable: TrueType fonts in PDF, ``<text>``
    in SVG), anything else as a raster at ``dpi`` (the PNG records it). The one place every
    figure file is written."""
    import matplotlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Title": figure_title(fig)} if path.suffix.lower() in (".png", *VECTOR_SUFFIXES) else None
    with matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        fig.savefig(path, dpi=dpi, metadata=metadata)
    return path


#: raster formats :func:`save_picture` writes (a sheet drawn with Pillow has no vector form).
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".pdf")


def save_picture(picture: Image.Image, path: str | Path, title: str | None = None) -> Path:
    """Write a picture drawn with Pillow (filter grids, dataset-example sheets, unit strips) the
    way :func:`save_figure` writes a matplotlib figure: at :data:`PRINT_DPI` (one pixel is
    1/300 inch when printed; a PDF gets the same resolution) with its title in a PNG's metadata
    (``title``, else the one :func:`annotate` drew), creating the folder."""
    from PIL.PngImagePlugin import PngInfo

    from .errors import ConvscopeError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PICTURE_SUFFIXES:
        raise ConvscopeError(
            f"{path}: a picture is saved as {' | '.join(PICTURE_SUFFIXES)}, not {suffix or 'no suffix'}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    title = picture.info.get("title", "") if title is None else title
    options: dict = {"resolution": float(PRINT_DPI)} if suffix == ".pdf" else {"dpi": (PRINT_DPI, PRINT_DPI)}
    if suffix == ".png" and title:
        options["pnginfo"] = PngInfo()
        options["pnginfo"].add_text("Title", " ".join(str(title).split()))
    picture.convert("RGB").save(path, **options)
    return path


def figure_title(fig) -> str:
    """A figure's title on one line: its ``suptitle``, else the first axes title (written into
    the file's metadata, so a PNG says what it shows)."""
    title = fig.get_suptitle() or next((axis.get_title() for axis in fig.axes if axis.get_title()), "")
    return " ".join(title.split())


def figure_to_image(
    fig,
    path: str | Path | None = None,
    h_pad: float | None = None,
    dpi: int = SCREEN_DPI,
    tight: bool = True,
) -> Image.Image:
    """Render a matplotlib figure (tight layout, unless ``tight`` is false: laid out already) to a
    PIL image at ``dpi`` (recorded in its ``info["dpi"]``), save it to ``path`` if given
    (:func:`save_figure`: a PNG/JPEG at :data:`PRINT_DPI`, or PDF/SVG; the title in the PNG's
    metadata) and close it."""
    if tight:
        fig.tight_layout(h_pad=h_pad)
    buffer = io.BytesIO()
    raster = path is not None and Path(path).suffix.lower() not in VECTOR_SUFFIXES
    # a raster file: one pass at print resolution, the returned picture is that reduced (box filter)
    fig.savefig(buffer, format="png", dpi=PRINT_DPI if raster else dpi, metadata={"Title": figure_title(fig)})
    picture = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if raster:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if Path(path).suffix.lower() == ".png":
            Path(path).write_bytes(buffer.getvalue())  # matplotlib's PNG records the dpi
        else:
            picture.save(path, dpi=(PRINT_DPI, PRINT_DPI))
        factor = PRINT_DPI // dpi
        picture = picture.reduce(factor) if factor > 1 else picture
    elif path is not None:
        save_figure(fig, path)
    pyplot().close(fig)
    picture.info["dpi"] = (dpi, dpi)
    return picture


def upsample(heat: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(N, 1, h, w) or (h, w) map -> same layout at ``size`` (bilinear, align_corners=False)."""
    squeeze = heat.ndim == 2
    heat = heat[None, None] if squeeze else heat
    heat = resize_map(heat.float(), size, mode)
    return heat[0, 0] if squeeze else heat


def normalize_map(heat: torch.Tensor, mode: str = "minmax", percentile: float = 99.5) -> torch.Tensor:
    """Scale one map to [0, 1] for display.

    ``minmax``: (h - min) / (max - min). ``abs``: |h| / percentile(|h|) clipped (gradient maps,
    so that a few extreme pixels do not wash out the rest). ``signed``: h / percentile(|h|)
    mapped to [0, 1] with 0.5 as zero (for diverging colour maps).
    """
    heat = heat.detach().float().cpu()
    if mode == "minmax":
        low, high = heat.min(), heat.max()
        return (heat - low) / (high - low + 1e-12)
    scale = torch.quantile(heat.abs().flatten()[:1_000_000], percentile / 100) + 1e-12
    if mode == "abs":
        return (heat.abs() / scale).clamp(0, 1)
    if mode == "signed":
        return (heat / scale).clamp(-1, 1) * 0.5 + 0.5
    raise ValueError(f"unknown normalisation {mode!r}")


def _as_map(heat: torch.Tensor) -> torch.Tensor:
    heat = heat.detach().float().cpu()
    while heat.ndim > 2 and heat.shape[0] == 1:
        heat = heat[0]
    if heat.ndim == 3:  # per-channel map: show the largest magnitude over channels
        heat = heat.abs().amax(dim=0)
    return heat


def colorize(heat: torch.Tensor, cmap: str = "jet") -> np.ndarray:
    """A [0, 1] map (h, w) -> HxWx3 uint8 through a matplotlib colour map."""
    import matplotlib

    colours = matplotlib.colormaps[cmap](heat.numpy())[..., :3]
    return (colours * 255 + 0.5).astype(np.uint8)


def overlay(
    image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5, cmap: str = "jet", mode: str = "minmax"
) -> Image.Image:
    """Blend a colour-mapped map over an image -> PIL image at the image's size."""
    picture = to_uint8(image).astype(np.float32)
    heat = _as_map(heat)
    heat = upsample(heat, picture.shape[:2]) if tuple(heat.shape) != picture.shape[:2] else heat
    shown = normalize_map(heat, mode)
    if mode == "signed" and cmap == "jet":
        cmap = "RdBu_r"  # diverging, white at zero
    coloured = colorize(shown, cmap).astype(np.float32)
    if mode in ("abs", "signed"):
        # sparse maps (gradients): colour only where the map is strong, so the photo shows elsewhere
        strength = (shown if mode == "abs" else (shown - 0.5).abs() * 2).numpy()[..., None]
        weight = alpha * np.clip(strength * 1.5, 0.15, 1.0)
    else:
        weight = alpha
    return Image.fromarray(((1 - weight) * picture + weight * coloured).round().clip(0, 255).astype(np.uint8))


def colour_scale(heat: torch.Tensor, mode: str, unit: str = "") -> tuple[float, float, str]:
    """The range a map (h, w) is drawn over, in the units its colour bar shows, and the bar's label.

    ``signed``: true units, ±its 99.5th percentile of |value| (:func:`normalize_map`'s scale);
    ``minmax`` and ``abs``: [0, 1] of the scaled map; ``probability``: [0, 1]."""
    name = unit or "value"
    if mode == "signed":
        limit = float(torch.quantile(heat.abs().flatten()[:1_000_000].float(), 0.995)) or 1e-12
        return -limit, limit, f"{name} (0 = white; clipped at ±p99.5)"
    if mode == "probability":
        return 0.0, 1.0, unit or "probability"
    labels = {"minmax": f"{name}, min-max scaled: 0 = min, 1 = max", "abs": f"|{name}| / its 99.5th percentile"}
    return 0.0, 1.0, labels.get(mode, mode)


def overlay_with_bar(
    image: torch.Tensor,
    heat: torch.Tensor,
    mode: str = "minmax",
    unit: str = "",
    size: float = 2.6,
    dpi: int = SCREEN_DPI,
    title: str | None = None,
) -> Image.Image:
    """:func:`overlay` with a colour bar that says what its colours mean (:func:`colour_scale`):
    the picture ``size`` inches tall, at ``dpi`` (the report's tiles), ``title`` above it."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    plt = pyplot()
    picture = overlay(image, heat, mode=mode)
    low, high, label = colour_scale(_as_map(heat), mode, unit)
    fig, axis = plt.subplots(figsize=(size * 1.32, size))
    axis.imshow(picture)
    axis.axis("off")
    if title:
        axis.set_title(wrap(title, size, 8), fontsize=8)
    cmap = "RdBu_r" if mode == "signed" else "jet"
    bar = fig.colorbar(ScalarMappable(Normalize(low, high), cmap), ax=axis, fraction=0.046, pad=0.03)
    bar.set_label(wrap(label, size * 0.95, 8), fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return figure_to_image(fig, dpi=dpi)


def wrap(text: str, inches: float, points: float) -> str:
    """Break each line of ``text`` so that it fits ``inches`` at a font of ``points`` (DejaVu Sans
    averages about 0.55 em per character)."""
    import textwrap

    width = max(12, int(inches * 72 / (points * 0.55)))
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) or line for line in text.split("\n"))


@dataclass
class Panel:
    """One picture of a figure: an image (3, H, W), or a map drawn over ``under`` (or alone);
    ``None``: an empty place in the grid (a row that ends early)."""

    picture: torch.Tensor | None
    title: str = ""
    under: torch.Tensor | None = None
    cmap: str = "jet"
    mode: str = "minmax"
    colorbar: bool = False
    #: what the map's values are (e.g. "logit drop"), for the colour bar
    unit: str = ""


def figure(
    panels: Sequence[Panel],
    path: str | Path | None = None,
    columns: int | None = None,
    suptitle: str | None = None,
    panel_size: float = 3.0,
    dpi: int = SCREEN_DPI,
    legend: Sequence[tuple[str, tuple[int, int, int]]] = (),
) -> Image.Image:
    """Lay panels out in a grid (matplotlib), save to ``path`` if given, and return the PIL image
    (at ``dpi``; the file is written at :data:`PRINT_DPI`). ``panel_size`` is in inches.

    Titles wrap to their panel's width and the title above all (``suptitle``) to the figure's.
    ``legend``: (name, RGB 0-255) pairs drawn as colour swatches under the panels (class colours
    of masks)."""
    plt = pyplot()
    columns = columns or len(panels)
    rows = (len(panels) + columns - 1) // columns
    titles = [wrap(panel.title, panel_size * (0.8 if panel.colorbar else 1.0), 9) for panel in panels]
    suptitle = wrap(suptitle, panel_size * columns, 11) if suptitle else None
    lines = max((title.count("\n") + 1 for title in titles if title), default=0)
    top = 0.25 * (suptitle.count("\n") + 1) + 0.15 if suptitle else 0
    legend_columns = max(1, min(len(legend), int(panel_size * columns / 1.3)))
    below = 0.22 * -(-len(legend) // legend_columns) + 0.15 if legend else 0
    height = panel_size * rows + 0.3 * max(0, lines - 1) * rows + top + below
    fig, axes = plt.subplots(rows, columns, figsize=(panel_size * columns, height), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, panel, title in zip(axes.flat, panels, titles):
        if panel.picture is None:
            continue
        picture = panel.picture.detach().float().cpu()
        if panel.under is None and picture.ndim >= 3 and picture.shape[-3] == 3 and not panel.colorbar:
            axis.imshow(to_uint8(picture))
        else:
            heat = _as_map(picture)
            if panel.under is not None:
                axis.imshow(to_uint8(panel.under))
                size = tuple(panel.under.shape[-2:])
                heat = upsample(heat, size) if tuple(heat.shape) != size else heat
            alpha = 0.5 if panel.under is not None else 1.0
            low, high, label = colour_scale(heat, panel.mode, panel.unit)
            if panel.mode == "signed":  # true units, diverging map centred at 0
                artist = axis.imshow(
                    heat.numpy(),
                    cmap="RdBu_r" if panel.cmap == "jet" else panel.cmap,
                    vmin=low,
                    vmax=high,
                    alpha=0.65 if panel.under is not None else 1.0,
                )
            else:
                shown = heat if panel.mode == "probability" else normalize_map(heat, panel.mode)
                artist = axis.imshow(shown.numpy(), cmap=panel.cmap, vmin=low, vmax=high, alpha=alpha)
            if panel.colorbar:
                bar = fig.colorbar(artist, ax=axis, fraction=0.046, pad=0.04)
                bar.set_label(label, fontsize=7)
                bar.ax.tick_params(labelsize=7)
        axis.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    if legend:
        from matplotlib.patches import Patch

        swatches = [Patch(facecolor=np.asarray(rgb) / 255, edgecolor="black", label=name) for name, rgb in legend]
        fig.legend(handles=swatches, loc="lower center", ncols=legend_columns, fontsize=8, frameon=False)
    h_pad = 1.2 * lines if lines > 1 else None
    if legend:  # lay the panels out without the legend's band, then add the band below them, inches unchanged
        width = fig.get_figwidth()
        fig.set_size_inches(width, height - below)
        fig.tight_layout(h_pad=h_pad)
        params = fig.subplotpars
        fig.set_size_inches(width, height)
        lift = below / height
        fig.subplots_adjust(bottom=lift + params.bottom * (1 - lift), top=lift + params.top * (1 - lift))
    return figure_to_image(fig, path, h_pad=h_pad, dpi=dpi, tight=not legend)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    path: str | Path | None = None,
    title: str = "",
    xlabel: str = "probability",
    dpi: int = SCREEN_DPI,
) -> Image.Image:
    """Horizontal bars (e.g. top-5 probabilities), largest on top."""
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(5, 0.45 * len(labels) + 0.8))
    axis.barh(range(len(labels))[::-1], values, color="#4c72b0")
    axis.set_yticks(range(len(labels))[::-1], labels, fontsize=9)
    axis.set_xlim(0, max(1.0, max(values, default=0)))
    axis.set_xlabel(xlabel)
    axis.set_title(title, fontsize=10)
    return figure_to_image(fig, path, dpi=dpi)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def annotate(
    picture: Image.Image, title: str = "", row_labels: Sequence[str] = (), row_height: int = 0, label_width: int = 0
) -> Image.Image:
    """Add a title band above a PIL sheet and, with ``row_labels``, a left column naming each row
    (rows ``row_height`` px apart). For figures made of tiles (filters, dataset examples)."""
    from PIL import ImageDraw

    band = 26 if title else 0
    margin = label_width or (max((len(text) for text in row_labels), default=0) * 7 + 10 if row_labels else 0)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    needed = int(probe.textlength(title, font=_font(14))) + 12 if title else 0
    out = Image.new("RGB", (max(picture.width + margin, needed), picture.height + band), (255, 255, 255))
    out.paste(picture, (margin, band))
    draw = ImageDraw.Draw(out)
    if title:
        draw.text((6, 5), title, fill=(0, 0, 0), font=_font(14))
    for row, text in enumerate(row_labels):
        draw.text((4, band + row * row_height + max(0, row_height // 2 - 7)), text, fill=(0, 0, 0), font=_font(11))
    out.info["title"] = title  # written into the file's metadata by save_picture
    return out


def png_bytes(picture: Image.Image) -> bytes:
    """PNG-encode a PIL image (for notebooks, the report and the web app), with its dpi if it has one."""
    buffer = io.BytesIO()
    dpi = picture.info.get("dpi")
    picture.save(buffer, format="PNG", **({"dpi": dpi} if dpi else {}))
    return buffer.getvalue()
