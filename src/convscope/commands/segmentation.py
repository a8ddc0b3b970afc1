"""``convscope heatmap`` (fully-convolutional class map) and ``convscope segment train|predict|eval``; tour step."""

from __future__ import annotations

__all__ = [
    "app",
    "BackboneOption",
    "eval_command",
    "heatmap_command",
    "heatmap_figure",
    "heatmap_step",
    "predict_command",
    "segment",
    "train_command",
]

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .data_options import StrictOption, WorkersOption
from .common import (
    DeviceOption,
    ModelArgs,
    TrustOption,
    console,
    err_console,
    model_options,
    output_path,
)
from ..errors import ConvscopeError
from ..tour import tour_step

if TYPE_CHECKING:
    import torch

app = typer.Typer()

BackboneOption = Annotated[
    Optional[str],
    typer.Option(
        "--backbone",
        help="backbone of an FCN checkpoint, when it is not a known model name (your file or module:callable)",
    ),
]


def heatmap_figure(model, image: torch.Tensor, target, path: Path):
    """Write the image and the per-location class probability over it; returns the :class:`ClassMap`."""
    from ..render import Panel, figure

    from ..segmentation import class_heatmap

    heat = class_heatmap(model, image, target)
    rows, cols = heat.probability.shape[-2:]
    figure(
        [
            Panel(image[0], f"input {image.shape[-2]}x{image.shape[-1]}"),
            Panel(
                heat.probability[0],
                f"p({heat.label or heat.class_id}) per location, {rows}x{cols}",
                under=image[0],
                mode="probability",
                colorbar=True,
                unit=f"p({heat.label or heat.class_id})",
            ),
        ],
        path,
        suptitle=f"{getattr(model, 'name', 'model')}: {heat.label or heat.class_id}, max p = {float(heat.probability.max()):.3f}",
    )
    return heat


@tour_step(80, "fully-convolutional 'tabby cat' heatmap")
def heatmap_step(model, image, out: Path) -> list[Path]:
    import torch

    larger = torch.nn.functional.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False).clamp(0, 1)
    path = out / "fcn_heatmap.png"
    heatmap_figure(model, larger, "tabby", path)
    return [path]


def _data(
    spec: str,
    size: int,
    split: str | None,
    count: int,
    seed: int,
    workers=None,
    strict: bool = False,
    preprocessing: str = "squash",
):
    """Generated scenes in memory, or a folder's pairs streamed through the dataset layer's loader
    (image and mask fitted to the size by ``preprocessing``)."""
    from ..segmentation import generate_scenes, open_mask_folder

    if spec == "generated:scenes":
        return generate_scenes(count, size=size, seed=seed)
    return open_mask_folder(spec, size, split, workers, strict, preprocessing)


def _report_skips(data) -> None:
    skips = getattr(data, "skips", None)
    if skips is not None and len(skips):
        err_console.print(skips.summary(), markup=False)


@app.command("heatmap")
@model_options
def heatmap_command(
    image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
    class_name: Annotated[str, typer.Option("--class", help="class name or id, e.g. 'tabby'")] = "tabby",
    size: Annotated[
        int,
        typer.Option("--size", help="shorter image side in pixels (larger than the training size gives a finer map)"),
    ] = 448,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("heatmap.png"),
    model: ModelArgs = None,
) -> None:
    """Run the classifier as a fully-convolutional net on a large image: a map of one class's probability."""
    from ..images import load_image

    from ..checks import model_device

    network = model.open()
    picture = load_image(image, size=None)
    scale = size / min(picture.shape[-2:])
    shape = (round(picture.shape[-2] * scale), round(picture.shape[-1] * scale))
    picture = load_image(picture, size=shape, preprocessing="squash")  # the aspect is kept: a plain resize
    heat = heatmap_figure(network, picture.to(model_device(network)), class_name, output_path(out))
    probability = heat.probability[0]
    row, col = divmod(int(probability.argmax()), probability.shape[-1])
    console.print(
        f"{heat.label or heat.class_id}: map {tuple(probability.shape)}, max p = {float(probability.max()):.3f} "
        f"at cell ({row}, {col}), mean p = {float(probability.mean()):.3f} -> {out}"
    )


segment = typer.Typer(
    help="Segmentation networks: train, predict, evaluate (FCN-32s/16s/8s, U-Net, SegNet).", no_args_is_help=True
)
app.add_typer(segment, name="segment")


@segment.command("train")
@model_options
def train_command(
    data: Annotated[
        str,
        typer.Argument(
            help="folder (JPEGImages/ + SegmentationClass/, or images/ + masks/), streamed; or 'generated:scenes'"
        ),
    ],
    head: Annotated[
        str, typer.Option("--head", help="segmentation network: fcn32s | fcn16s | fcn8s (on the model) | unet | segnet")
    ] = "fcn8s",
    size: Annotated[int, typer.Option("--size", help="image side in pixels")] = 96,
    count: Annotated[int, typer.Option("--count", help="generated scenes to train on")] = 300,
    epochs: Annotated[int, typer.Option("--epochs")] = 5,
    lr: Annotated[float, typer.Option("--lr")] = 3e-3,
    loss: Annotated[str, typer.Option("--loss", help="ce | dice | ce+dice")] = "ce",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    split: Annotated[Optional[str], typer.Option("--split", help="VOC ImageSets split to train on")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workers: WorkersOption = None,
    strict: StrictOption = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="checkpoint: OUT.safetensors (weights) + OUT.json (what it is)")
    ] = Path("segmenter.safetensors"),
    model: ModelArgs = None,
) -> None:
    """Train a segmentation network; 15 % of the data is held out and scored every epoch.

    The FCN heads run on the model given with the shared model options (-m, --weights, --arch, ...);
    U-Net and SegNet train from scratch.
    """
    from dataclasses import replace

    from ..devices import resolve_device
    from ..segmentation import build_segmenter, train_segmenter
    from ..segmentation.checkpoint import ARCHITECTURES, WITH_BACKBONE, save_segmenter

    if model.spec.arch in ARCHITECTURES:  # the spelling before --head (--arch is the model's builder now)
        err_console.print(f"warning: --arch {model.spec.arch} is deprecated here: use --head {model.spec.arch}")
        head, model = model.spec.arch, replace(model, spec=replace(model.spec, arch=None))
    if head not in ARCHITECTURES:
        raise ConvscopeError(f"unknown segmentation head {head!r}: choose {', '.join(ARCHITECTURES)}")
    # --preprocess (a model option) fits image and mask alike; squash (the whole picture) unless given
    fitted = model.spec.preprocess or "squash"
    train, val = _data(data, size, split, count, seed, workers, strict, fitted).split(0.15, seed)
    backbone = model.open() if head in WITH_BACKBONE else None
    net = build_segmenter(head, len(train.classes), backbone or model.spec.source).to(resolve_device(model.device))
    history = train_segmenter(net, train, val, epochs=epochs, lr=lr, batch_size=batch_size, loss=loss, seed=seed)
    saved = save_segmenter(net, output_path(out), head, train.classes, size, model.spec, fitted)
    for epoch, (value, miou, accuracy) in enumerate(zip(history.loss, history.val_miou, history.val_pixel_accuracy), 1):
        console.print(f"epoch {epoch}: loss {value:.3f}, held-out mIoU {miou:.3f}, pixel accuracy {accuracy:.3f}")
    _report_skips(train)
    console.print(f"{'interrupted; ' if history.interrupted else ''}saved {saved} and {saved.with_suffix('.json')}")


@segment.command("eval")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint written by 'segment train' (.safetensors or .json)")],
    data: Annotated[
        str,
        typer.Argument(
            help="folder (JPEGImages/ + SegmentationClass/, or images/ + masks/), streamed; or 'generated:scenes'"
        ),
    ],
    count: Annotated[int, typer.Option("--count", help="generated scenes to score")] = 100,
    split: Annotated[Optional[str], typer.Option("--split")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of generated scenes (differs from training's 0)")] = 1234,
    workers: WorkersOption = None,
    strict: StrictOption = False,
    preprocess: Annotated[
        Optional[str],
        typer.Option(
            "--preprocess",
            help="squash | center-crop: how image and mask are fitted to the size (default: as the checkpoint trained)",
        ),
    ] = None,
    backbone: BackboneOption = None,
    trust: TrustOption = False,
    device: DeviceOption = "auto",
) -> None:
    """mIoU, pixel accuracy and per-class IoU on DATA, fitted to the size as `segment train` fitted its data."""
    from rich.table import Table

    from ..segmentation import evaluate_segmenter
    from ..segmentation.checkpoint import load_segmenter

    net, classes, size, fitted = load_segmenter(checkpoint, device, backbone, trust)
    if preprocess is not None and preprocess != fitted:
        err_console.print(
            f"warning: {checkpoint.name} was trained on data fitted by {fitted}; scoring with {preprocess}"
        )
    data_set = _data(data, size, split, count, seed, workers, strict, preprocess or fitted)
    scores = evaluate_segmenter(net, data_set)
    _report_skips(data_set)
    table = Table(
        "class",
        "IoU",
        title=f"{checkpoint}: mIoU {scores.mean_iou:.3f}, pixel accuracy {scores.pixel_accuracy:.3f}",
    )
    for name, value in zip(classes, scores.class_iou.tolist()):
        table.add_row(name, f"{value:.3f}")
    console.print(table)


@segment.command("predict")
def predict_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint written by 'segment train' (.safetensors or .json)")],
    images: Annotated[list[str], typer.Argument(help="image files or sample:NAME")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("segmentation.png"),
    backbone: BackboneOption = None,
    trust: TrustOption = False,
    device: DeviceOption = "auto",
) -> None:
    """Predicted masks drawn in colour over the images."""
    import torch

    from ..images import load_images
    from ..segmentation import predict_masks, prediction_figure
    from ..segmentation.checkpoint import load_segmenter

    net, classes, size, fitted = load_segmenter(checkpoint, device, backbone, trust)
    batch = load_images(images, size, fitted)  # fitted to the size as the training images were
    masks = predict_masks(net, batch)
    heading = f"{checkpoint.name}: predicted masks at {size}x{size} px"
    prediction_figure(batch, masks, classes, path=output_path(out), title=heading, names=images)
    for spec, mask in zip(images, masks):
        shares = torch.bincount(mask.flatten(), minlength=len(classes)).float() / mask.numel()
        console.print(
            f"{spec}: " + ", ".join(f"{n} {s:.0%}" for n, s in zip(classes, shares.tolist()) if s > 0),
            emoji=False,
            markup=False,
        )
    console.print(f"-> {out}")
