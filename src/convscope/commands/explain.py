"""CLI commands ``explain`` (attribution maps) and ``sanity`` (Adebayo et al. 2018 checks), and their tour step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import typer

from ..attribution import METHODS, attribute, method_options
from ..cli_common import (ArchOption, DeviceOption, ModelOption, TrustOption, WeightsOption, console, open_image,
                          open_model, output_path)
from ..errors import ConvscopeError
from ..models import DEFAULT_MODEL
from ..render import Panel, figure
from ..tour import tour_step

CAM_METHODS = {"cam", "gradcam", "gradcam_pp", "occlusion"}


def display_mode(method: str) -> str:
    """How a method's map is scaled for display: min-max for CAM-like maps, |value|/p99.5 for gradients."""
    return "minmax" if method in CAM_METHODS else "abs"


def explain_figure(model, image: torch.Tensor, methods: list[str], classes: list[int], layer: str | None = None,
                   path: Path | None = None, options: dict | None = None):
    """One row per class, one column per method: the map over the image, with a colour bar.

    Returns the PIL figure and the maps ``{method: Tensor (K, C, H, W)}``.
    """
    probabilities = _probabilities(model, image)
    labels = model.labels or [str(i) for i in range(probabilities.shape[-1])]
    maps: dict[str, torch.Tensor] = {}
    batch = image.expand(len(classes), -1, -1, -1)
    for method in methods:
        extra = dict((options or {}).get(method, {}))
        if layer is not None and "layer" in method_options(method):
            extra["layer"] = layer
        maps[method] = attribute(model, batch, classes, method=method, **extra).detach().cpu()
    panels = []
    for row, class_id in enumerate(classes):
        caption = f"{labels[class_id]} ({class_id}) p={probabilities[class_id]:.3f}"
        if len(methods) > 1:
            panels.append(Panel(image[0].cpu(), caption))
        for method in methods:
            panels.append(Panel(maps[method][row], f"{method}: {caption}" if len(methods) == 1 else method,
                                under=image[0].cpu(), mode=display_mode(method), colorbar=True))
    columns = len(panels) if len(methods) == 1 else (len(methods) + 1 if len(classes) > 1 else 5)
    picture = figure(panels, path, columns=columns, panel_size=3.2)
    return picture, maps


def _probabilities(model, image) -> torch.Tensor:
    from ..hooks import frozen

    with torch.no_grad(), frozen(model):
        return model(image).softmax(dim=-1)[0].cpu()


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_command(
        image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
        method: Annotated[str, typer.Option("--method", help=f"{' | '.join(METHODS.names())} | all")] = "gradcam",
        target: Annotated[Optional[str], typer.Option("--target", help="class id or name (default: the prediction)")] = None,
        topk: Annotated[int, typer.Option("--topk", help="explain the K most likely classes")] = 1,
        layer: Annotated[Optional[str], typer.Option("--layer", help="layer of CAM methods (default: last spatial)")] = None,
        out: Annotated[Path, typer.Option("--out", help="figure to write (.png)")] = Path("explain.png"),
        save_array: Annotated[Optional[Path], typer.Option("--save-array", help="raw maps: .npy (one method) or .npz (all)")] = None,
        steps: Annotated[int, typer.Option("--steps", help="integrated-gradients steps")] = 32,
        samples: Annotated[int, typer.Option("--samples", help="SmoothGrad noisy copies")] = 16,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        size: Annotated[Optional[int], typer.Option("--size", help="resize the image to SIZE x SIZE")] = None,
        model: ModelOption = DEFAULT_MODEL, weights: WeightsOption = None, arch: ArchOption = None,
        trust: TrustOption = False, device: DeviceOption = "auto",
    ) -> None:
        """Attribution map(s) of one image, drawn over it with the class name and probability."""
        if method != "all":
            METHODS.get(method)
            if layer is not None and "layer" not in method_options(method):
                raise ConvscopeError(f"--layer: method {method!r} takes no layer (layer methods: "
                                     f"{', '.join(m for m in METHODS.names() if 'layer' in method_options(m))})")
        network = open_model(model, weights, arch, trust, device)
        picture = open_image(image, network, size)
        methods = METHODS.names() if method == "all" else [method]
        if target is not None and topk != 1:
            raise ConvscopeError("give --target or --topk, not both")
        if target is not None:
            from ..targets import class_index

            classes = [class_index(target, network.labels)]
        else:
            classes = _probabilities(network, picture).topk(topk).indices.tolist()
        options = {"integrated_gradients": {"steps": steps}, "smoothgrad": {"n": samples, "seed": seed},
                   "smoothgrad_sq": {"n": samples, "seed": seed}}
        _, maps = explain_figure(network, picture, methods, classes, layer, output_path(out), options)
        console.print(f"wrote {out}")
        if save_array is not None:
            if len(methods) == 1:
                np.save(output_path(save_array), maps[methods[0]].numpy())
            else:
                np.savez(output_path(save_array), **{name: value.numpy() for name, value in maps.items()})
            console.print(f"wrote {save_array}")

    @app.command("sanity")
    def sanity_command(
        image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
        methods: Annotated[str, typer.Option("--methods", help="comma-separated attribution methods")] =
        "saliency,guided_backprop,gradcam,guided_gradcam,integrated_gradients",
        scheme: Annotated[str, typer.Option("--scheme", help="cascading | independent")] = "cascading",
        target: Annotated[Optional[str], typer.Option("--target", help="class id or name (default: the prediction)")] = None,
        out: Annotated[Path, typer.Option("--out", help="figure to write (.png)")] = Path("sanity.png"),
        steps: Annotated[int, typer.Option("--steps", help="integrated-gradients steps")] = 16,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        size: Annotated[Optional[int], typer.Option("--size", help="resize the image to SIZE x SIZE")] = None,
        model: ModelOption = DEFAULT_MODEL, weights: WeightsOption = None, arch: ArchOption = None,
        trust: TrustOption = False, device: DeviceOption = "auto",
    ) -> None:
        """Model-parameter randomization test (Adebayo 2018): similarity of each map as layers are randomized."""
        from rich.table import Table

        from ..attribution.sanity import sanity_check, sanity_figure

        network = open_model(model, weights, arch, trust, device)
        picture = open_image(image, network, size)
        chosen = [name.strip() for name in methods.split(",") if name.strip()]
        result = sanity_check(network, picture, target, chosen, scheme, seed=seed,
                              options={"integrated_gradients": {"steps": steps}})
        table = Table("method", "randomized", "Spearman", "SSIM", title=f"{scheme} randomization (1 = unchanged map)")
        for method, step, rho, ssim in result.rows():
            table.add_row(method, step, f"{rho:.3f}", f"{ssim:.3f}")
        console.print(table)
        sanity_figure(result, picture[0].cpu(), output_path(out))
        console.print(f"wrote {out}")


@tour_step(30, "why this prediction: attribution maps")
def attribution_step(model, image, out: Path) -> list[Path]:
    path = out / "attribution.png"
    explain_figure(model, image, ["saliency", "guided_backprop", "gradcam", "guided_gradcam"], [285], path=path)
    return [path]
