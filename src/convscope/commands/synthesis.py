"""CLI commands ``visualize``, ``dream``, ``invert``, ``invert-text`` and ``stylize`` (thin wrappers over
:mod:`convscope.optimize`), and their tour step."""

from __future__ import annotations

__all__ = [
    "app",
    "dream_command",
    "invert_command",
    "invert_text_command",
    "companion_figure",
    "companion_path",
    "OutOption",
    "parse_channels",
    "QuietOption",
    "SeedOption",
    "StepsOption",
    "stylize_command",
    "SWEEP_DEPTHS",
    "synthesis_step",
    "visualize_command",
]

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DeviceOption, ModelArgs, console, model_options, open_image, output_path
from ..errors import ConvscopeError
from ..tour import tour_step

app = typer.Typer()

StepsOption = Annotated[Optional[int], typer.Option("--steps", help="optimizer steps (default: the method's)")]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="output PNG")]
SeedOption = Annotated[int, typer.Option("--seed", help="random seed")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
#: relative depths (:func:`~convscope.layers.layer_at_depth`) of the layers ``invert --sweep`` inverts when
#: none are named: on the embedded model bn1, blocks.1, blocks.2, blocks.3, blocks.4, blocks.5, bn2.
SWEEP_DEPTHS = (0, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1)
#: the tour's layers, by relative depth: on the embedded model blocks.4, blocks.3 and blocks.2
VISUALIZE_DEPTH, DREAM_DEPTH, INVERT_DEPTH = 2 / 3, 1 / 2, 1 / 3


def parse_channels(text: str) -> list[int]:
    """``"7"``, ``"0,3,9"`` or ``"0-7"`` -> channel ids."""
    from ..cli_checks import parse_ids

    return parse_ids(text, "--channel")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _steps(value: int | None, default: int) -> dict:
    return {"steps": value if value is not None else default}


@app.command("visualize")
@model_options
def visualize_command(
    layer: Annotated[
        Optional[str], typer.Option("--layer", "-l", help="dotted layer name (see: convscope layers)")
    ] = None,
    channel: Annotated[
        Optional[str], typer.Option("--channel", "-c", help="channel id(s): 7, 0,3,9 or 0-7 (a grid)")
    ] = None,
    class_: Annotated[Optional[str], typer.Option("--class", help="class name or id (class visualization)")] = None,
    steps: StepsOption = None,
    param: Annotated[str, typer.Option("--param", help="fft | pixel")] = "fft",
    size: Annotated[
        Optional[int], typer.Option("--size", help="image side (default: 128, or a fixed-size model's input size)")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate")] = 0.05,
    no_transforms: Annotated[bool, typer.Option("--no-transforms", help="plain ascent, no random transforms")] = False,
    out: OutOption = Path("visualize.png"),
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    model: ModelArgs = None,
) -> None:
    """Activation maximization: images that excite a channel (or several, as a grid) or a class."""
    from ..images import save_image

    from ..optimize import visualize_channel, visualize_class

    if (class_ is None) == (layer is None):
        raise ConvscopeError("give either --layer with --channel, or --class")
    if layer is not None and channel is None:
        raise ConvscopeError("--layer needs --channel")
    network = model.open()
    if size is None:
        size = network.input_shape[0] if network.fixed_size else 128
    options = dict(size=size, param=param, lr=lr, seed=seed, progress=not quiet, **_steps(steps, 256))
    if no_transforms:
        options.update(transforms=())
    shown = (
        visualize_class(network, class_, **options)
        if class_ is not None
        else visualize_channel(network, layer, parse_channels(channel), **options)
    )
    path = save_image(shown.image, output_path(out))
    scores = ", ".join(f"{v:.3g}" for v in shown.scores.tolist())
    what = shown.objective
    if class_ is not None:  # "espresso, p = 0.98": the class by name and what the model says of the image
        import torch

        from ..hooks import frozen
        from ..targets import class_index

        class_id = class_index(class_, network.labels)
        with torch.no_grad(), frozen(network):
            probability = network(shown.image.to(next(network.parameters()).device)).softmax(-1)[0, class_id]
        name = network.labels[class_id] if network.labels else str(class_id)
        what = f"{name} ({class_id}), p = {float(probability):.3f}"
        titles = [f"{what}\nlogit {float(shown.scores[0]):.3g}"]
        heading = f"{network.name}: class visualization, {shown.run.steps} steps"
    else:
        titles, heading = channel_titles(shown, layer, parse_channels(channel), network.name)
    drawn = visualization_figure(shown, titles, heading, companion_path(path))
    console.print(f"{what}: score {scores} ({shown.run.steps} steps, {shown.run.stopped}) -> {path}, {drawn}")


def channel_titles(shown, layer: str, channels: list[int], model_name: str) -> tuple[list[str], str]:
    """Panel titles (channel id, final mean activation) and the heading of a channel grid."""
    titles = [f"channel {c}\nmean activation {float(v):.3g}" for c, v in zip(channels, shown.scores)]
    return titles, f"{model_name} · {layer}: feature visualization, {shown.run.steps} steps"


def companion_path(path: Path) -> Path:
    """Where the titled figure of a raw result written to ``path`` goes: ``NAME_figure.png`` beside it."""
    return output_path(path.with_name(f"{path.stem}_figure.png"))


def companion_figure(panels, heading: str, path: Path) -> Path:
    """The raw result's titled figure (model, layer and the number that matters) at 300 dpi."""
    from ..render import figure

    figure(panels, path, columns=len(panels), suptitle=heading, panel_size=2.4)
    return path


def visualization_figure(shown, titles: list[str], heading: str, path: Path) -> Path:
    """A visualization's images side by side (at most 4 a row), each titled, under ``heading``."""
    from ..render import Panel, figure

    panels = [Panel(image.cpu(), title) for image, title in zip(shown.image, titles)]
    figure(panels, path, columns=min(4, len(panels)), suptitle=heading, panel_size=2.4)
    return path


@app.command("dream")
@model_options
def dream_command(
    image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
    layer: Annotated[
        Optional[str], typer.Option("--layer", "-l", help="dotted layer name (default: the stage at half depth)")
    ] = None,
    octaves: Annotated[int, typer.Option("--octaves", help="pyramid levels")] = 4,
    octave_scale: Annotated[float, typer.Option("--octave-scale", help="size ratio between levels")] = 1.4,
    steps: StepsOption = None,
    lr: Annotated[float, typer.Option("--lr", help="step size (mean pixel change per step)")] = 0.01,
    size: Annotated[Optional[int], typer.Option("--size", help="resize the photo (default: the model's size)")] = None,
    out: OutOption = Path("dream.png"),
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    model: ModelArgs = None,
) -> None:
    """DeepDream: amplify what LAYER sees in the photo (octaves, jitter)."""
    from ..images import save_image

    from ..optimize import dream
    from ..render import Panel

    network = model.open()
    photo = open_image(image, network, size)
    if layer is None:
        layer = chosen_layer(network, DREAM_DEPTH, photo, "DeepDream")
    result = dream(
        network,
        photo,
        layer,
        octaves=octaves,
        octave_scale=octave_scale,
        lr=lr,
        seed=seed,
        progress=not quiet,
        **_steps(steps, 10),
    )
    path = save_image(result.image, output_path(out))
    energy = f"{result.histories[0][0]:.3g} → {result.histories[-1][-1]:.3g}"
    drawn = companion_figure(
        [Panel(photo[0].cpu(), "input"), Panel(result.image[0].cpu(), f"dreamed at {layer}\nlayer energy {energy}")],
        f"{network.name} · {layer}: DeepDream, {octaves} octaves × {_count(_steps(steps, 10)['steps'], 'step')}, "
        f"layer energy (½ mean h²) {energy}",
        companion_path(path),
    )
    console.print(f"{result.layer}: {energy.replace('→', '->')} -> {path}, {drawn}")


def chosen_layer(model, depth: float, image, what: str = "") -> str:
    """The stage at relative ``depth`` of ``model`` for images like ``image``
    (:func:`~convscope.layers.layer_at_depth`), said in one line when ``what`` names its use."""
    from ..layers import layer_at_depth

    name = layer_at_depth(model, depth, tuple(image.shape[-2:])).name
    if what:
        console.print(f"{what} at {name} (the stage at depth {depth:.2g} of {model.name}; --layer to choose)")
    return name


@app.command("invert-text")
def invert_text_command(
    prompt: Annotated[list[str], typer.Argument(help="text prompt(s), one image each")],
    clip: Annotated[str, typer.Option("--clip", help="open_clip architecture, e.g. ViT-B-32 or RN50")] = "ViT-B-32",
    weights: Annotated[Path, typer.Option("--weights", help="your CLIP weights file (nothing is downloaded)")] = Path(
        "clip.pt"
    ),
    steps: StepsOption = None,
    size: Annotated[int, typer.Option("--size", help="image side")] = 224,
    out: OutOption = Path("invert_text.png"),
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    device: DeviceOption = "auto",
) -> None:
    """Inverting CLIP: render an image whose CLIP embedding points at a text prompt (needs open_clip)."""
    from ..images import save_image

    from ..devices import resolve_device
    from ..optimize.clip import invert_text, load_clip

    loaded = load_clip(clip, weights, device=resolve_device(device))
    shown = invert_text(loaded, prompt, size=size, seed=seed, progress=not quiet, **_steps(steps, 256))
    path = save_image(shown.image, output_path(out))
    scores = ", ".join(f"{v:.3f}" for v in shown.scores.tolist())
    console.print(f"cosine to the prompt: {scores} -> {path}")


@app.command("invert")
@model_options
def invert_command(
    image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
    layer: Annotated[
        Optional[list[str]], typer.Option("--layer", "-l", help="layer to invert (repeat with --sweep)")
    ] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="invert several layers into one figure")] = False,
    steps: StepsOption = None,
    tv_weight: Annotated[float, typer.Option("--tv-weight", help="total-variation weight (at stride <= 4)")] = 0.5,
    tv_by_depth: Annotated[
        bool,
        typer.Option(
            "--tv-by-depth/--tv-fixed", help="raise the TV weight with the layer's stride (the paper's practice)"
        ),
    ] = True,
    size: Annotated[int, typer.Option("--size", help="image side")] = 128,
    out: OutOption = Path("invert.png"),
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    model: ModelArgs = None,
) -> None:
    """Feature inversion (Mahendran & Vedaldi): reconstruct the photo from a layer's representation."""
    from ..images import save_image

    from ..optimize import invert_sweep
    from ..render import Panel, figure

    layers = list(layer or [])
    if not sweep and len(layers) != 1:
        raise ConvscopeError("give one --layer (or several with --sweep)")
    network = model.open()
    photo = open_image(image, network, size)
    if not layers:
        from ..layers import layers_at_depths

        stages = layers_at_depths(network, SWEEP_DEPTHS, tuple(photo.shape[-2:]))
        layers = list(dict.fromkeys(stage.name for stage in stages))
        console.print(f"inverting the stages at depths 0 … 1 of {network.name}: {', '.join(layers)}")
    results = invert_sweep(
        network,
        photo,
        layers,
        tv_weight=tv_weight,
        tv_by_depth=tv_by_depth,
        seed=seed,
        progress=not quiet,
        **_steps(steps, 200),
    )
    for result in results:
        console.print(f"{result.layer}: relative error {float(result.relative_error[0]):.3f}")
    path = output_path(out)
    if sweep:
        panels = [Panel(photo[0], "input")] + [
            Panel(r.image[0], f"{r.layer}\nrelative error {float(r.relative_error[0]):.2f}") for r in results
        ]
        heading = f"{network.name}: {image} inverted from each layer (Mahendran & Vedaldi 2015)"
        figure(panels, path, columns=min(4, len(panels)), suptitle=heading)
    else:
        error = float(results[0].relative_error[0])
        drawn = companion_figure(
            [
                Panel(photo[0], "input"),
                Panel(results[0].image[0], f"inverted from {layers[0]}\nrelative error {error:.3f}"),
            ],
            f"{network.name} · {layers[0]}: feature inversion (Mahendran & Vedaldi 2015), "
            f"relative error ‖Φ(x) − Φ0‖² / ‖Φ0‖² = {error:.3f}",
            companion_path(path),
        )
        path = save_image(results[0].image, path)
        console.print(f"-> {path}, {drawn}")
        return
    console.print(f"-> {path}")


@app.command("stylize")
@model_options
def stylize_command(
    content: Annotated[str, typer.Argument(help="content image file or sample:NAME")],
    style: Annotated[str, typer.Argument(help="style image file or sample:NAME (e.g. sample:brick)")],
    steps: StepsOption = None,
    style_weight: Annotated[float, typer.Option("--style-weight", help="style / content weight ratio")] = 3.0,
    init: Annotated[str, typer.Option("--init", help="content | noise")] = "content",
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam | lbfgs")] = "adam",
    size: Annotated[Optional[int], typer.Option("--size", help="image side (default: the model's size)")] = None,
    content_layer: Annotated[
        Optional[str],
        typer.Option("--content-layer", help="layer whose activations keep the content (default: the model's)"),
    ] = None,
    style_layers: Annotated[
        Optional[str],
        typer.Option("--style-layers", help="comma-separated layers whose Gram matrices carry the style"),
    ] = None,
    out: OutOption = Path("stylize.png"),
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    model: ModelArgs = None,
) -> None:
    """Neural style transfer (Gatys et al.): CONTENT painted with the textures of STYLE."""
    from ..images import save_image

    from ..optimize import stylize

    from ..render import Panel

    network = model.open()
    content_image, style_image = open_image(content, network, size), open_image(style, network, size)
    result = stylize(
        network,
        content_image,
        style_image,
        style_weight=style_weight,
        init=init,
        optimizer=optimizer,
        content_layer=content_layer,
        style_layers=None if style_layers is None else [v.strip() for v in style_layers.split(",") if v.strip()],
        lr=1.0 if optimizer == "lbfgs" else 0.02,
        seed=seed,
        progress=not quiet,
        **_steps(steps, 150),
    )
    path = save_image(result.image, output_path(out))
    losses = (
        f"style loss {result.initial_style_loss:.3g} → {float(result.final_style_loss[0]):.3g}, "
        f"content loss {result.initial_content_loss:.3g} → {float(result.final_content_loss[0]):.3g}"
    )
    drawn = companion_figure(
        [
            Panel(content_image[0].cpu(), f"content: {content}\n(kept at {result.content_layer})"),
            Panel(style_image[0].cpu(), f"style: {style}\n(Gram matrices at {', '.join(result.style_layers)})"),
            Panel(result.image[0].cpu(), f"stylized, {_count(_steps(steps, 150)['steps'], 'step')}"),
        ],
        f"{network.name}: style transfer (Gatys et al. 2016), {losses}",
        companion_path(path),
    )
    console.print(f"{losses.replace('→', '->')} -> {path}, {drawn}")


@tour_step(60, "feature visualization, DeepDream, inversion and style transfer")
def synthesis_step(model, image, out: Path) -> list[Path]:
    from ..images import save_image

    import torch.nn.functional as F

    from ..images import load_image
    from ..layers import layers_at_depths
    from ..optimize import dream, invert, stylize, visualize_channel

    from ..render import Panel, figure

    stages = layers_at_depths(model, (VISUALIZE_DEPTH, DREAM_DEPTH, INVERT_DEPTH), tuple(image.shape[-2:]))
    visualized, dreamed_at, inverted_at = (stage.name for stage in stages)
    console.print(
        f"  layers chosen by depth in {model.name}: feature visualization {visualized}, DeepDream {dreamed_at}, "
        f"inversion {inverted_at}"
    )
    channels = spread_channels((stages[0].output_shape or (0,))[0])
    shown = visualize_channel(model, visualized, channels, size=96, steps=48, progress=False)
    dreamed = dream(model, image, dreamed_at, octaves=2, steps=6, progress=False)
    small = F.interpolate(image, size=128, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    inverted = invert(model, small, inverted_at, steps=60, progress=False)
    brick = load_image("sample:brick", 128).to(small.device)
    styled = stylize(model, small, brick, steps=150, progress=False)
    grid = visualization_figure(
        shown,
        *channel_titles(shown, visualized, channels, model.name),
        out / f"visualize_{visualized.replace('.', '')}.png",
    )
    energy = f"{dreamed.histories[0][0]:.3g} → {dreamed.histories[-1][-1]:.3g}"
    style = f"{styled.initial_style_loss:.3g} → {float(styled.final_style_loss[0]):.3g}"
    panels = [
        Panel(image[0].cpu(), "input"),
        Panel(dreamed.image[0].cpu(), f"DeepDream at {dreamed_at}\nlayer energy {energy}"),
        Panel(
            inverted.image[0].cpu(),
            f"inverted from {inverted_at}\nrelative error {float(inverted.relative_error[0]):.2f}",
        ),
        Panel(brick[0].cpu(), "style image (brick)"),
        Panel(styled.image[0].cpu(), f"style transfer\nstyle loss {style}"),
    ]
    summary = out / "synthesis.png"
    figure(panels, summary, columns=5, panel_size=2.4, suptitle=f"{model.name}: images made from gradients")
    return [
        grid,
        save_image(dreamed.image, out / "dream.png"),
        save_image(inverted.image, out / f"invert_{inverted_at.replace('.', '')}.png"),
        save_image(styled.image, out / "stylize_brick.png"),
        summary,
    ]


def spread_channels(count: int) -> list[int]:
    """Four channels spread over a layer of ``count``: 10, 20, 30, 40 when it has more than 40."""
    step = max(1, min(10, count // 5))
    return [c for c in (step, 2 * step, 3 * step, 4 * step) if c < count] or [0]
