"""A static HTML neuron atlas (after OpenAI Microscope): one page per channel, opens from disk.

Layout of ``out/``: ``index.html`` (the layers, each with a thumbnail grid of its channels:
the top dataset-example patch, or the feature visualization when rendered), one folder per
layer with ``index.html`` and ``channel_C.html`` pages: the channel's dataset examples
(receptive-field patch next to the whole image with the box; optionally the deconvnet
projection of each example, Zeiler & Fergus 2014), its feature visualization (Olah et al.
2017, :mod:`convscope.optimize.visualize`; only when asked for: it is
slow), its weights and summary statistics, with links to the neighbouring channels and
layers. Every link is relative, nothing is fetched, no server is needed.
"""

from __future__ import annotations

__all__ = ["build_atlas"]

import html
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import nn

from ..errors import ConvscopeError
from ..images import to_uint8
from ..render import save_picture
from .examples.drawing import example_strip, tile
from .examples.types import TopExamples
from .weights import channel_weight, filter_tiles, row_tiles, weight_grid

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}a{color:#2255aa;text-decoration:none}
.grid{display:flex;flex-wrap:wrap;gap:6px}.grid a{display:block;text-align:center;font-size:11px;color:#444}
.grid img{display:block;width:72px;height:72px;object-fit:cover;image-rendering:pixelated;border:1px solid #ddd}
nav{margin:.5em 0 1em;font-size:14px}nav a{margin-right:1.2em}table{border-collapse:collapse;font-size:14px}
td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}.pixel{image-rendering:pixelated}
section{margin-bottom:1.5em}"""


class _Template:
    """A jinja2 template compiled on first use (jinja2 comes with the ``cli`` extra)."""

    def __init__(self, source: str):
        self.source = source
        self.compiled: Any = None

    def render(self, **values) -> str:
        if self.compiled is None:
            import jinja2

            self.compiled = jinja2.Template(self.source)
        return self.compiled.render(**values)


_INDEX = _Template("""<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>{{ style }}</style></head><body><h1>{{ title }}</h1>
<p>{{ seen }} images, top {{ k }} examples per channel, images at {{ size }}&times;{{ size }} px.
Dataset examples after Zeiler &amp; Fergus (2014): the images whose strongest activation of the channel is
largest, with the receptive-field patch of that position.</p>
{% for layer in layers %}<section><h2 id="{{ layer.name }}"><a href="{{ layer.folder }}/index.html">{{ layer.name }}</a></h2>
<p>{{ layer.channels }} channels, feature map {{ layer.map }}, receptive field {{ layer.field }}</p>
<div class="grid">{% for c in layer.thumbs %}<a href="{{ layer.folder }}/channel_{{ c.index }}.html">
<img src="{{ layer.folder }}/img/thumb_{{ c.index }}.png" alt="channel {{ c.index }}">{{ c.index }}</a>{% endfor %}</div>
</section>{% endfor %}</body></html>""")

_LAYER = _Template("""<!doctype html><html><head><meta charset="utf-8"><title>{{ layer.name }}</title>
<style>{{ style }}</style></head><body><nav><a href="../index.html">atlas</a>
{% if previous %}<a href="../{{ previous.folder }}/index.html">&larr; layer {{ previous.name }}</a>{% endif %}
{% if next %}<a href="../{{ next.folder }}/index.html">layer {{ next.name }} &rarr;</a>{% endif %}</nav>
<h1>{{ layer.name }}</h1><p>{{ layer.channels }} channels, feature map {{ layer.map }}, receptive field {{ layer.field }}</p>
<div class="grid">{% for c in layer.thumbs %}<a href="channel_{{ c.index }}.html"><img src="img/thumb_{{ c.index }}.png"
alt="channel {{ c.index }}">{{ c.index }}</a>{% endfor %}</div></body></html>""")

_CHANNEL = _Template("""<!doctype html><html><head><meta charset="utf-8"><title>{{ layer.name }} channel {{ index }}</title>
<style>{{ style }}</style></head><body><nav><a href="../index.html">atlas</a><a href="index.html">{{ layer.name }}</a>
{% if index_previous is not none %}<a href="channel_{{ index_previous }}.html">&larr; channel {{ index_previous }}</a>{% endif %}
{% if index_next is not none %}<a href="channel_{{ index_next }}.html">channel {{ index_next }} &rarr;</a>{% endif %}
{% for other in neighbours %}<a href="../{{ other.folder }}/{{ other.link }}">{{ other.label }}</a>{% endfor %}</nav>
<h1>{{ layer.name }} &middot; channel {{ index }}</h1>
<section><h2>Summary</h2><table>{% for key, value in stats %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table></section>
{% if visualization %}<section><h2>Feature visualization</h2><img src="img/vis_{{ index }}.png" width="224"></section>{% endif %}
<section><h2>Dataset examples</h2><p>Left: receptive-field patch (enlarged); right: the whole image with the box.
{% if projection %}Third column: the deconvnet projection of the unit onto the patch (Zeiler &amp; Fergus 2014).{% endif %}</p>
<img src="img/examples_{{ index }}.png"><p>{% for source in sources %}{{ loop.index }}. {{ source }}<br>{% endfor %}</p></section>
{% if weights %}<section><h2>Weights</h2><p>{{ weights_note }}</p><img class="pixel" src="img/weights_{{ index }}.png"></section>{% endif %}
</body></html>""")


def build_atlas(
    model: nn.Module,
    examples: TopExamples,
    out: str | Path,
    layers: Sequence[str] | None = None,
    channels: Sequence[int] | None = None,
    feature_vis: bool = False,
    vis_steps: int = 128,
    projections: bool = False,
    side: int = 112,
    progress: bool = True,
) -> Path:
    """Write the atlas of mined ``examples`` into ``out``; return the path of ``index.html``.

    Args:
        model: the model the examples were mined on (for weights, visualizations, projections).
        examples: a :class:`TopExamples` from :func:`~convscope.dissect.top_k_examples`.
        out: output folder (created).
        layers: which mined layers (default all, in mining order: neighbours link to each other).
        channels: which channels of each layer (default all).
        feature_vis: add each channel's feature visualization (needs :mod:`convscope.optimize`;
            ``vis_steps`` optimization steps per channel, batched per layer: slow on CPU).
        projections: add the deconvnet projection of each example.
        side: pixel side of the example tiles.

    >>> found = top_k_examples(model, sample_folder("photos"), ["blocks.1", "blocks.3"])
    >>> build_atlas(model, found, "atlas")          # open atlas/index.html in a browser
    """
    from ..progress import progress_bar

    out = Path(out)
    names = list(layers) if layers is not None else list(examples.layers)
    for name in names:
        examples[name]  # a clear error for a layer that was not mined
    visualize = None
    if feature_vis:
        from ..optimize.visualize import visualize_channel as visualize
    infos = [_layer_info(examples, name, channels) for name in names]
    total = sum(len(info["thumbs"]) for info in infos)
    with progress_bar(total, "writing atlas", progress, interrupted=None) as advance:
        for position, info in enumerate(infos):
            folder = out / info["folder"]
            (folder / "img").mkdir(parents=True, exist_ok=True)
            indices = [c["index"] for c in info["thumbs"]]
            pictures: dict = (
                _visualizations(model, visualize, info["name"], indices, examples.size, vis_steps) if visualize else {}
            )
            statistics = examples.statistics(info["name"])
            order = torch.argsort(statistics["mean_max"], descending=True)
            rank = {int(c): r + 1 for r, c in enumerate(order)}
            previous = infos[position - 1] if position > 0 else None
            following = infos[position + 1] if position + 1 < len(infos) else None
            for number, channel in enumerate(indices):
                found = examples.patches(info["name"], channel)
                thumb = pictures.get(channel)
                if thumb is None:
                    thumb = found[0][0] if found else torch.ones(3, 8, 8)
                Image.fromarray(to_uint8(thumb)).resize(
                    (side, side), Image.Resampling.NEAREST if thumb.shape[-1] < side else Image.Resampling.BILINEAR
                ).save(folder / "img" / f"thumb_{channel}.png")
                if channel in pictures:
                    Image.fromarray(to_uint8(pictures[channel])).save(folder / "img" / f"vis_{channel}.png")
                strip = example_strip(found, side)
                if projections and found and examples[info["name"]].field.size is not None:
                    strip = _with_projections(model, examples, info["name"], channel, found, strip, side)
                save_picture(strip, folder / "img" / f"examples_{channel}.png")
                weights_note = _save_weights(model, info["name"], channel, folder / "img" / f"weights_{channel}.png")
                record = examples[info["name"]]
                sources = [
                    examples.sources[int(i)] if examples.sources else f"image {int(i)}"
                    for i in record.indices[channel]
                    if int(i) >= 0
                ]
                stats = [
                    ("top activation", f"{float(statistics['top'][channel]):.4g}"),
                    ("mean of the spatial max", f"{float(statistics['mean_max'][channel]):.4g}"),
                    ("mean activation", f"{float(statistics['mean'][channel]):.4g}"),
                    ("fires (max > 0) on", f"{100 * float(statistics['firing_rate'][channel]):.1f} % of images"),
                    ("rank in layer (mean max)", f"{rank[channel]} of {record.channels}"),
                ]
                neighbours = [
                    {
                        "folder": other["folder"],
                        "label": f"{label} {other['name']}",
                        "link": f"channel_{channel}.html" if channel in other["indices"] else "index.html",
                    }
                    for label, other in (("layer", previous), ("layer", following))
                    if other
                ]
                page = _CHANNEL.render(
                    style=_STYLE,
                    layer=info,
                    index=channel,
                    stats=stats,
                    index_previous=indices[number - 1] if number > 0 else None,
                    index_next=indices[number + 1] if number + 1 < len(indices) else None,
                    neighbours=neighbours,
                    visualization=channel in pictures,
                    projection=projections,
                    weights=weights_note is not None,
                    weights_note=weights_note,
                    sources=[html.escape(s) for s in sources],
                )
                (folder / f"channel_{channel}.html").write_text(page, encoding="utf-8")
                advance()
            (folder / "index.html").write_text(
                _LAYER.render(style=_STYLE, layer=info, previous=previous, next=following), encoding="utf-8"
            )
    index = out / "index.html"
    index.write_text(
        _INDEX.render(
            style=_STYLE,
            title=f"Neuron atlas: {getattr(model, 'name', type(model).__name__)}",
            layers=infos,
            seen=examples.seen,
            k=examples.k,
            size=examples.size,
        ),
        encoding="utf-8",
    )
    return index


def _layer_info(examples: TopExamples, name: str, channels: Sequence[int] | None) -> dict:
    record = examples[name]
    indices = list(range(record.channels)) if channels is None else [c for c in channels if 0 <= c < record.channels]
    if not indices:
        raise ConvscopeError(f"no valid channels for layer {name!r} (it has {record.channels})")
    field = (
        "the whole image"
        if record.field.size is None
        else f"{record.field.size[0]:g} px, stride {record.field.jump[0]:g}"
    )
    return {
        "name": name,
        "folder": name.replace("/", "_"),
        "channels": record.channels,
        "map": "x".join(map(str, record.map_size)),
        "field": field,
        "indices": set(indices),
        "thumbs": [{"index": c} for c in indices],
    }


def _visualizations(
    model, visualize, layer: str, channels: list[int], size: int, steps: int
) -> dict[int, torch.Tensor]:
    shown = visualize(model, layer, list(channels), size=min(size, 128), steps=steps, progress=False)
    return {channel: image for channel, image in zip(channels, shown.image.detach().cpu())}


def _save_weights(model: nn.Module, layer: str, channel: int, path: Path) -> str | None:
    """Save the filter producing ``channel`` (if one can be found); return a caption or None."""
    found = channel_weight(model, layer, channel)
    if found is None:
        return None
    source, weight = found
    inputs = weight.shape[0] if weight.ndim == 3 else weight.numel()
    if weight.ndim == 1 or weight.shape[-2:] == (1, 1):  # linear row or 1x1 conv: one weight per input
        rows = _near_square(inputs)
        save_picture(weight_grid(row_tiles(weight.reshape(1, -1), (rows, inputs // rows)), tile_side=192), path)
        kind = f"its {inputs} input weights as a {rows}x{inputs // rows} grid, row-major (grey = 0)"
    else:
        tiles = filter_tiles(weight[None], "rgb" if weight.shape[0] == 3 else "channels", max_inputs=32)
        save_picture(weight_grid(tiles, columns=16, tile_side=96), path)
        kind = (
            "RGB filter"
            if weight.shape[0] == 3
            else f"first {min(32, inputs)} of {inputs} input-channel slices (grey = 0)"
        )
    return f"{source}, output channel {channel}: {kind}"


def _with_projections(
    model, examples: TopExamples, layer: str, channel: int, found, strip: Image.Image, side: int
) -> Image.Image:
    from .projection import project_units

    record = examples[layer]
    count = len(found)
    images = torch.stack([image for _, image, _ in found])
    positions = [tuple(record.positions[channel, r].tolist()) for r in range(count)]
    device = next(model.parameters()).device
    projected = project_units(model, images.to(device), layer, [channel] * count, positions).cpu()
    sheet = Image.new("RGB", (strip.width + side + 6, strip.height), (255, 255, 255))
    sheet.paste(strip, (0, 0))
    for r, (_, _, (top, left, bottom, right)) in enumerate(found):
        crop = projected[r, :, top:bottom, left:right]
        scale = torch.quantile(crop.abs().flatten().float(), 0.995).clamp_min(
            1e-12
        )  # a few pixels must not grey out the rest
        shown = (0.5 + crop / (2 * scale)).clamp(0, 1)
        sheet.paste(tile(Image.fromarray(to_uint8(shown)), side), (strip.width + 6, r * (side + 4)))
    return sheet


def _near_square(count: int) -> int:
    """The largest divisor of ``count`` not above its square root (rows of a near-square grid)."""
    return max(d for d in range(1, int(count**0.5) + 1) if count % d == 0)
