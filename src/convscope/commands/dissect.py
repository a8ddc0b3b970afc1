"""Commands ``weights``, ``examples`` and ``atlas`` (thin wrappers over :mod:`convscope.dissect`), and the tour step."""

from __future__ import annotations

__all__ = [
    "app",
    "atlas_command",
    "dissect_step",
    "examples_command",
    "LayersOption",
    "SamplesOption",
    "weights_command",
]

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ModelArgs, console, data_preprocess, model_options, open_image, output_path
from .data_options import (
    AddressOption,
    DataArgument,
    DataLabelsOption,
    EngineOption,
    StrictOption,
    WorkersOption,
    check_engine,
)
from ..errors import ConvscopeError
from ..tour import tour_step

app = typer.Typer()

LayersOption = Annotated[list[str], typer.Option("--layer", "-l", help="layer name (repeat for several)")]
SamplesOption = Annotated[
    int, typer.Option("--make-samples", help="first fill the folder DATA with N bundled photos, crops and flips")
]


def _channels(text: str | None) -> list[int] | None:
    """'0-15,32' -> [0, ..., 15, 32]."""
    from ..cli_checks import parse_ids

    return parse_ids(text, "--channels") if text else None


def _shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConvscopeError(f"cannot read shape {text!r}: use e.g. 8x8 or 3x32x32") from None


def _mine(
    network,
    data: str,
    layers,
    k,
    size,
    batch_size,
    engine,
    address,
    make_samples,
    out: Path,
    strict: bool = False,
    workers: int | None = None,
    data_labels: Path | None = None,
):
    """Mine DATA (any dataset spec of the data layer) with the model's preprocessing; resumable from OUT."""
    from ..dissect import sample_folder, top_k_examples

    check_engine(engine)
    if make_samples:
        sample_folder(data, n=make_samples)
    found = top_k_examples(
        network,
        data,
        layers,
        k=k,
        size=size,
        batch_size=batch_size,
        engine=engine,
        address=address,
        checkpoint=out / "examples-checkpoint.safetensors",
        strict=strict,
        preprocess=data_preprocess(network),
        workers=workers,
        label_file=data_labels,
    )
    if found.skipped:
        from ..data import SkipLog

        console.print(SkipLog(found.skipped).summary())
    return found


@app.command("weights")
@model_options(device="cpu", positional=True)
def weights_command(
    layer: Annotated[
        Optional[str], typer.Option("--layer", "-l", help="conv or linear layer (default: the first convolution)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("weights.png"),
    mode: Annotated[str, typer.Option("--mode", help="auto | rgb | channels | norm")] = "auto",
    shape: Annotated[
        Optional[str], typer.Option("--shape", help="image shape of a linear layer's rows, e.g. 8x8")
    ] = None,
    max_filters: Annotated[int, typer.Option("--max-filters")] = 64,
    model: ModelArgs = None,
) -> None:
    """A layer's filters (first layer in colour) or an MLP's weight rows as an image grid."""
    from ..dissect import weight_grid, weight_tiles
    from ..render import save_picture

    network = model.open()
    if layer is None:
        from ..layers import first_convolution

        layer = first_convolution(network, network.input_shape if network.fixed_size else 224)
        console.print(f"the first convolution of {network.name}: {layer} (--layer to choose)")
    tiles = weight_tiles(network, layer, mode, _shape(shape), max_filters)
    weight = network.network.get_submodule(layer).weight if hasattr(network, "network") else None
    shape = "x".join(map(str, weight.shape)) if weight is not None else ""
    save_picture(
        weight_grid(
            tiles,
            numbered=True,
            title=f"{network.name} · {layer} ({shape}): {len(tiles)} "
            f"{'filters' if weight is not None and weight.ndim == 4 else 'rows'}, "
            f"{mode} view",
        ),
        output_path(out),
    )
    console.print(f"{len(tiles)} tiles of {layer} -> {out}")


@app.command("examples")
@model_options
def examples_command(
    layers: LayersOption,
    data: DataArgument = "samples:imagenet",
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("examples"),
    k: Annotated[int, typer.Option("--k", "-k", help="examples per channel")] = 9,
    channels: Annotated[Optional[str], typer.Option("--channels", help="e.g. 0-15 (default: first 16)")] = None,
    size: Annotated[int, typer.Option("--size")] = 224,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    image: Annotated[
        Optional[str], typer.Option("--image", help="reverse view: the units that fire most on this image")
    ] = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    make_samples: SamplesOption = 0,
    strict: StrictOption = False,
    workers: WorkersOption = None,
    data_labels: DataLabelsOption = None,
    model: ModelArgs = None,
) -> None:
    """Top-k dataset examples per channel with receptive-field patches (Zeiler & Fergus 2014).

    Resumable: partial results are kept in OUT/examples-checkpoint.safetensors (also after Ctrl-C); run again to go on.
    """
    from ..dissect import channel_sheet, example_strip, top_units
    from ..render import save_picture

    network = model.open()
    out.mkdir(parents=True, exist_ok=True)
    if image:
        picture = open_image(image, network, size)
        for layer in layers:
            units = top_units(network, picture, layer, k)
            found = [
                (picture[0, :, u.box[0] : u.box[2], u.box[1] : u.box[3]].cpu(), picture[0].cpu(), u.box) for u in units
            ]
            path = out / f"units_{layer}.png"
            strip = example_strip(
                found,
                112,
                title=f"{network.name} · {layer}: the units that fire most on {image}",
                labels=[f"ch {u.channel}\n{u.value:.3g}" for u in units],
            )
            save_picture(strip, path)
            console.print(
                f"{layer}: channels " + ", ".join(f"{u.channel} ({u.value:.3g})" for u in units) + f" -> {path}"
            )
        return
    found = _mine(
        network, data, layers, k, size, batch_size, engine, address, make_samples, out, strict, workers, data_labels
    )
    for layer in found.layers:
        shown = _channels(channels) or list(range(min(16, found[layer].channels)))
        path = out / f"examples_{layer}.png"
        top = found[layer].values.shape[1]
        title = f"{network.name} · {layer}: top-{top} dataset examples per channel ({found.seen} images)"
        save_picture(channel_sheet(found, layer, [c for c in shown if c < found[layer].channels], title=title), path)
        console.print(f"{layer}: {found.seen} images -> {path}")


@app.command("atlas")
@model_options
def atlas_command(
    layers: LayersOption,
    data: DataArgument = "samples:imagenet",
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("atlas"),
    k: Annotated[int, typer.Option("--k", "-k")] = 9,
    channels: Annotated[Optional[str], typer.Option("--channels", help="e.g. 0-31 (default: all)")] = None,
    size: Annotated[int, typer.Option("--size")] = 224,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    feature_vis: Annotated[bool, typer.Option("--feature-vis", help="add feature visualizations (slow)")] = False,
    projections: Annotated[
        bool, typer.Option("--projections", help="add deconvnet projections of the examples")
    ] = False,
    engine: EngineOption = "local",
    address: AddressOption = None,
    make_samples: SamplesOption = 0,
    strict: StrictOption = False,
    workers: WorkersOption = None,
    data_labels: DataLabelsOption = None,
    model: ModelArgs = None,
) -> None:
    """A static HTML neuron atlas (one page per channel) of LAYERs on DATA; open OUT/index.html."""
    from ..dissect.atlas import build_atlas

    network = model.open()
    found = _mine(
        network, data, layers, k, size, batch_size, engine, address, make_samples, out, strict, workers, data_labels
    )
    index = build_atlas(
        network, found, out, channels=_channels(channels), feature_vis=feature_vis, projections=projections
    )
    console.print(f"atlas of {', '.join(found.layers)} on {found.seen} images -> {index}")


#: the tour's layers, by relative depth (:func:`~convscope.layers.layer_at_depth`): dataset examples
#: at an early stage and at half depth, the units firing on the photo at half depth (bn1 and
#: blocks.3 on the embedded model)
EARLY_DEPTH, UNITS_DEPTH = 0, 1 / 2


@tour_step(60, "first-layer filters, units firing on the photo, dataset examples at the receptive field")
def dissect_step(model, image, out: Path) -> list[Path]:
    import tempfile

    from ..dissect import (
        channel_sheet,
        example_strip,
        layer_weight,
        sample_folder,
        top_k_examples,
        top_units,
        weight_grid,
        weight_tiles,
    )
    from ..layers import first_convolution, layers_at_depths
    from ..render import save_picture

    size = tuple(image.shape[-2:])
    first = first_convolution(model, size)
    early, middle = (stage.name for stage in layers_at_depths(model, (EARLY_DEPTH, UNITS_DEPTH), size))
    console.print(
        f"  layers chosen by depth in {model.name}: filters {first}, units {middle}, examples {early} and {middle}"
    )
    filters = out / "dissect_filters.png"
    shape = "x".join(map(str, layer_weight(model, first).shape))
    tiles = weight_tiles(model, first)
    title = f"{model.name} · {first} ({shape}): {len(tiles)} filters, colour view"
    save_picture(weight_grid(tiles, tile_side=72, numbered=True, title=title), filters)
    units = out / f"dissect_units_{middle}.png"
    picture = image[0].cpu()
    strongest = top_units(model, image, middle, k=4)
    strip = example_strip(
        [(picture[:, u.box[0] : u.box[2], u.box[1] : u.box[3]], picture, u.box) for u in strongest],
        112,
        title=f"{model.name} · {middle}: the units that fire most on the photo",
        labels=[f"ch {u.channel}\n{u.value:.3g}" for u in strongest],
    )
    save_picture(strip, units)
    with tempfile.TemporaryDirectory() as folder:
        found = top_k_examples(model, sample_folder(folder, n=24), [early, middle], k=6, size=160, progress=False)
        written = [filters, units]
        for layer in found.layers:
            path = out / f"dissect_examples_{layer}.png"
            top = found[layer].values.shape[1]
            title = f"{model.name} · {layer}: top-{top} dataset examples per channel ({found.seen} images)"
            save_picture(channel_sheet(found, layer, range(min(10, found[layer].channels)), title=title), path)
            written.append(path)
    return written
