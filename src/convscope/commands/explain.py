"""CLI commands ``explain`` (attribution maps) and ``sanity`` (Adebayo et al. 2018 checks), and their tour step."""

from __future__ import annotations

__all__ = ["app", "attribution_step", "explain_command", "explain_figure", "sanity_command"]

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .common import (
    ModelArgs,
    NamesHelp,
    SetOption,
    console,
    data_preprocess,
    model_options,
    open_image,
    output_path,
    parse_set,
)
from .data_options import AddressOption, DataLabelsOption, EngineOption, StrictOption, WorkersOption, check_engine
from ..errors import ConvscopeError
from ..tour import tour_step

if TYPE_CHECKING:
    import torch

app = typer.Typer()


def explain_figure(
    model,
    image: torch.Tensor,
    methods: list[str],
    classes: list[int],
    layer: str | None = None,
    path: Path | None = None,
    options: dict | None = None,
    progress: bool = False,
    quick: bool = False,
):
    """One row per class, one column per method: the map over the image, with a colour bar.
    ``quick``: the options are the registry's quick settings, said in the title.

    Returns the PIL figure and the maps ``{method: Tensor (K, C, H, W)}``.
    """

    from ..attribution import attribute, display_mode, display_unit, method_options
    from ..render import Panel, figure

    probabilities = _probabilities(model, image)
    labels = model.labels or [str(i) for i in range(probabilities.shape[-1])]
    maps: dict[str, torch.Tensor] = {}
    batch = image.expand(len(classes), -1, -1, -1)
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress or len(methods) < 2) as bar:
        task = bar.add_task("attribution", total=len(methods))
        for method in methods:
            bar.update(task, description=f"{method} ({len(classes)} class{'es' if len(classes) > 1 else ''})")
            extra = dict((options or {}).get(method, {}))
            if layer is not None and "layer" in method_options(method):
                extra["layer"] = layer
            maps[method] = attribute(model, batch, classes, method=method, **extra).detach().cpu()
            bar.advance(task)
    panels = []
    for row, class_id in enumerate(classes):
        caption = f"{labels[class_id]} ({class_id}) p={probabilities[class_id]:.3f}"
        if len(methods) > 1:
            panels.append(Panel(image[0].cpu(), caption))
        for method in methods:
            panels.append(
                Panel(
                    maps[method][row],
                    f"{method}: {caption}" if len(methods) == 1 else method,
                    under=image[0].cpu(),
                    mode=display_mode(method),
                    colorbar=True,
                    unit=display_unit(method, (options or {}).get(method, {})),
                )
            )
    # wrap into rows x columns (at most 6 wide); one class and one method per row when that fits
    columns = min(6, len(panels) if len(methods) == 1 else len(methods) + 1)
    title = (
        f"{getattr(model, 'name', 'model')}: "
        + ", ".join(f"{labels[c]} p = {probabilities[c]:.3f}" for c in classes[:3])
        + (" ..." if len(classes) > 3 else "")
        + ("  (quick settings of the slow methods; one --method runs its full defaults)" if quick else "")
    )
    picture = figure(panels, path, columns=columns, panel_size=3.2, suptitle=title)
    return picture, maps


def _settings_text(options: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in options.items())


def _probabilities(model, image) -> torch.Tensor:
    import torch

    from ..hooks import frozen

    with torch.no_grad(), frozen(model):
        return model(image).softmax(dim=-1)[0].cpu()


def _is_dataset(spec: str) -> bool:
    """A dataset spec (folder, samples:SET, photos, NAME:ROOT) rather than one image."""
    from ..data.specs import TORCHVISION_ROOTS

    if spec.startswith("samples:") or spec == "photos" or Path(spec).is_dir():
        return True
    head, _, rest = spec.partition(":")
    return bool(rest) and head.lower().removesuffix("-train") in TORCHVISION_ROOTS


@app.command("explain", cls=NamesHelp)
@model_options
def explain_command(
    image: Annotated[
        str,
        typer.Argument(help="image file or sample:NAME; or a dataset (folder, samples:imagenet, ...) for batch mode"),
    ],
    method: Annotated[str, typer.Option("--method", help="{attribution} | all")] = "gradcam",
    target: Annotated[
        Optional[str], typer.Option("--target", help="class id or name (default: the prediction)")
    ] = None,
    topk: Annotated[int, typer.Option("--topk", help="explain the K most likely classes")] = 1,
    layer: Annotated[
        Optional[str], typer.Option("--layer", help="layer of CAM methods (default: last spatial)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="figure to write (.png)")] = Path("explain.png"),
    save_array: Annotated[
        Optional[Path], typer.Option("--save-array", help="raw maps: .npy (one method) or .npz (all)")
    ] = None,
    steps: Annotated[
        Optional[int],
        typer.Option("--steps", help="iterations of the methods that take steps (default: the method's own)"),
    ] = None,
    samples: Annotated[
        Optional[int],
        typer.Option("--samples", help="random draws of the stochastic methods (default: the method's own)"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[Optional[int], typer.Option("--size", help="resize the image to SIZE x SIZE")] = None,
    settings: SetOption = [],  # noqa: B006 (typer reads the default)
    overlays: Annotated[
        bool, typer.Option("--overlays", help="batch mode: also write one overlay PNG per image")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="batch mode: images per batch (one .npz each)")] = 16,
    metrics: Annotated[
        Optional[str],
        typer.Option("--metrics", help="batch mode: deletion,insertion AUC per image, dataset mean with a 95% CI"),
    ] = None,
    map_format: Annotated[
        str, typer.Option("--format", help="batch mode: npz (one file of maps per batch) | npy (one file per image)")
    ] = "npz",
    data_labels: DataLabelsOption = None,
    strict: StrictOption = False,
    engine: EngineOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
    model: ModelArgs = None,
) -> None:
    """Attribution map(s) of one image, drawn over it with the class name and probability.

    Given a dataset (a folder, samples:imagenet, ...) instead of one image: batch mode, one
    map per image in OUT/maps/*.npz (--format npy: one .npy per image) and OUT/index.csv (image, label, target, probability,
    score), resumable; --target predicted | label."""
    import numpy as np

    from ..attribution import METHODS, method_options

    if method != "all" and layer is not None and "layer" not in method_options(METHODS.canonical(method)):
        raise ConvscopeError(
            f"--layer: method {method!r} takes no layer (layer methods: "
            f"{', '.join(m for m in METHODS.names() if 'layer' in method_options(m))})"
        )
    if _is_dataset(image):
        from ..attribution.batch import explain_dataset

        check_engine(engine)
        network = model.open()
        folder = Path("explanations") if out == Path("explain.png") else out
        name = METHODS.canonical(method)
        given = {"steps": steps, "samples": samples}
        options = {key: value for key, value in given.items() if value is not None and key in method_options(name)}
        index, reduced = explain_dataset(
            network,
            image,
            name,
            folder,
            target or "predicted",
            layer,
            overlays,
            seed,
            batch_size,
            size,
            data_preprocess(network),
            strict,
            True,
            engine,
            address,
            workers,
            data_labels,
            progress=True,
            metrics=[m.strip() for m in (metrics or "").split(",") if m.strip()],
            map_format=map_format,
            **options,
        )
        console.print(
            f"{name}: {reduced.images} maps in {folder / 'maps'}, index {index}"
            + (f", {reduced.resumed} shard(s) resumed" if reduced.resumed else "")
            + (f"; {reduced.skips.summary()}" if len(reduced.skips) else "")
        )
        for metric, (mean, half) in reduced.summary.items():
            console.print(
                f"{metric} AUC {mean:.4f} ± {half:.4f} (95% CI over {reduced.images} images; "
                f"{'lower' if metric == 'deletion' else 'higher'} is better)"
            )
        return
    network = model.open()
    picture = open_image(image, network, size)
    methods = METHODS.names() if method == "all" else [METHODS.canonical(method)]
    if target is not None and topk != 1:
        raise ConvscopeError("give --target or --topk, not both")
    if target is not None:
        from ..targets import class_index

        classes = [class_index(target, network.labels)]
    else:
        classes = _probabilities(network, picture).topk(topk).indices.tolist()
    # --method all: every method with its registry's quick settings (full defaults make Score-CAM,
    # Ablation-CAM, KernelSHAP and LIME minutes long at 224 px); one --method: its own defaults.
    # The CLI's --steps / --samples (when given) and --seed go to every chosen method that takes them.
    from ..attribution import quick_options

    quick = method == "all"
    given = {"steps": steps, "samples": samples, "seed": seed}
    options: dict[str, dict] = {
        name: (quick_options(name) if quick else {})
        | {key: value for key, value in given.items() if value is not None and key in method_options(name)}
        for name in methods
    }
    if quick:
        console.print(
            "--method all: quick settings for "
            + "; ".join(f"{name} {_settings_text(quick_options(name))}" for name in methods if quick_options(name))
        )
    # --set KEY=VALUE: checked against the chosen methods' signatures (did-you-mean)
    accepted = sorted({key for name in methods for key in method_options(name)})
    for key, value in parse_set(settings).items():
        if key not in accepted:
            import difflib

            close = difflib.get_close_matches(key, accepted, n=3, cutoff=0.5)
            raise ConvscopeError(
                f"--set: {', '.join(methods) if len(methods) < 4 else 'these methods'} has no option "
                f"{key!r}" + (f"; did you mean {', '.join(close)}?" if close else f"; options: {', '.join(accepted)}")
            )
        for name in methods:
            if key in method_options(name):
                options[name][key] = value
    _, maps = explain_figure(
        network, picture, methods, classes, layer, output_path(out), options, progress=True, quick=quick
    )
    console.print(f"wrote {out}")
    if save_array is not None:
        if len(methods) == 1:
            np.save(output_path(save_array), maps[methods[0]].numpy())
        else:
            np.savez(output_path(save_array), **{name: value.numpy() for name, value in maps.items()})
        console.print(f"wrote {save_array}")


@app.command("sanity")
@model_options
def sanity_command(
    image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
    methods: Annotated[
        str, typer.Option("--methods", help="comma-separated attribution methods")
    ] = "saliency,guided_backprop,gradcam,guided_gradcam,integrated_gradients",
    scheme: Annotated[str, typer.Option("--scheme", help="cascading | independent")] = "cascading",
    target: Annotated[
        Optional[str], typer.Option("--target", help="class id or name (default: the prediction)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="figure to write (.png)")] = Path("sanity.png"),
    steps: Annotated[int, typer.Option("--steps", help="integrated-gradients steps")] = 16,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[Optional[int], typer.Option("--size", help="resize the image to SIZE x SIZE")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="dataset mode: images per batch")] = 8,
    strict: StrictOption = False,
    workers: WorkersOption = None,
    data_labels: DataLabelsOption = None,
    model: ModelArgs = None,
) -> None:
    """Model-parameter randomization test (Adebayo 2018): similarity of each map as layers are randomized.

    Given a dataset instead of one image: mean Spearman and SSIM over its images with 95 % CIs
    (--target predicted | label)."""
    if _is_dataset(image):
        from rich.table import Table

        from ..attribution.batch import sanity_dataset

        network = model.open()
        chosen = [name.strip() for name in methods.split(",") if name.strip()]
        rows, names, reduced = sanity_dataset(
            network,
            image,
            chosen,
            scheme,
            seed,
            target or "predicted",
            {"integrated_gradients": {"steps": steps}},
            batch_size,
            size,
            data_preprocess(network),
            strict,
            workers,
            label_file=data_labels,
            progress=True,
        )
        table = Table(
            "method",
            "randomized",
            "Spearman [95% CI]",
            "SSIM [95% CI]",
            title=f"{scheme} randomization over {reduced.images} images (1 = unchanged map)",
        )
        for method, step, rho, rho_half, ssim, ssim_half in rows:
            table.add_row(
                method,
                names[step] if step < len(names) else str(step),
                f"{rho:.3f} ± {rho_half:.3f}",
                f"{ssim:.3f} ± {ssim_half:.3f}",
            )
        console.print(table)
        if len(reduced.skips):
            console.print(reduced.skips.summary())
        return
    from rich.table import Table

    from ..attribution.sanity import sanity_check, sanity_figure

    network = model.open()
    picture = open_image(image, network, size)
    chosen = [name.strip() for name in methods.split(",") if name.strip()]
    result = sanity_check(
        network, picture, target, chosen, scheme, seed=seed, options={"integrated_gradients": {"steps": steps}}
    )
    table = Table("method", "randomized", "Spearman", "SSIM", title=f"{scheme} randomization (1 = unchanged map)")
    for method, step, rho, ssim in result.rows():
        table.add_row(method, step, f"{rho:.3f}", f"{ssim:.3f}")
    console.print(table)
    sanity_figure(result, picture[0].cpu(), output_path(out))
    console.print(f"wrote {out}")


@tour_step(30, "why this prediction: attribution maps")
def attribution_step(model, image, out: Path) -> list[Path]:
    path = out / "attribution.png"
    top = int(_probabilities(model, image).argmax())  # explain what the model predicts for this photo
    explain_figure(model, image, ["saliency", "guided_backprop", "gradcam", "guided_gradcam"], [top], path=path)
    return [path]
