"""CLI commands ``attack`` (the classic figure), ``attack-eval`` (a folder), ``fooling``, ``patch``, and their tour step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..attacks import ATTACKS, attack
from ..attacks.evaluate import evaluate_attack
from ..attacks.evolution import fooling_gallery, fooling_images
from ..attacks.figure import attack_figure
from ..cli_common import (ArchOption, DeviceOption, ModelOption, TrustOption, WeightsOption, console, open_image,
                          open_model, output_path)
from ..errors import ConvscopeError
from ..images import image_files, load_folder, save_image
from ..models import DEFAULT_MODEL
from ..targets import class_index
from ..tour import tour_step


def parse_eps(text: str | None) -> float | None:
    """``"8/255"``, ``"0.03"`` or None -> float (pixel units, in [0, 1])."""
    from ..cli_checks import parse_eps as parse

    return parse(text)


def parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs (values as JSON when possible: 10, 0.5, true) -> keyword options."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConvscopeError(f"--option takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


METHODS_HELP = " | ".join(ATTACKS.names())


def register(app: typer.Typer) -> None:

    @app.command("attack")
    def attack_command(
        image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
        method: Annotated[str, typer.Option("--method", help=METHODS_HELP)] = "pgd",
        eps: Annotated[Optional[str], typer.Option("--eps", help="budget in pixel units, e.g. 8/255 (default: the method's)")] = None,
        target: Annotated[Optional[str], typer.Option("--target", help="class id or name (targeted attack)")] = None,
        option: Annotated[list[str], typer.Option("--option", "-o", help="method option KEY=VALUE (steps=20, alpha=1/255 as 0.0039)")] = [],  # noqa: B006
        out: Annotated[Path, typer.Option("--out", help="figure to write (.png)")] = Path("attack.png"),
        save_adversarial: Annotated[Optional[Path], typer.Option("--save-adversarial", help="also write the adversarial image (.png)")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        size: Annotated[Optional[int], typer.Option("--size", help="resize the image to SIZE x SIZE")] = None,
        model: ModelOption = DEFAULT_MODEL, weights: WeightsOption = None, arch: ArchOption = None,
        trust: TrustOption = False, device: DeviceOption = "auto",
    ) -> None:
        """Attack one image and draw original | perturbation (amplified) | adversarial."""
        ATTACKS.get(method)
        classifier = open_model(model, weights, arch, trust, device)
        x = open_image(image, classifier, size)
        result = attack(classifier, x, method=method, eps=parse_eps(eps), target=target, seed=seed, progress=True,
                        **parse_options(option))
        attack_figure(result, 0, output_path(out))
        if save_adversarial is not None:
            save_image(result.x_adv, output_path(save_adversarial))
        row = result.rows()[0]
        console.print(f"{method}: {row['original']} ({100 * row['original_confidence']:.1f}%) -> {row['adversarial']} "
                      f"({100 * row['confidence']:.1f}%), {'fooled' if row['success'] else 'not fooled'}; "
                      f"L∞ {255 * row['linf']:.2f}/255, L2 {row['l2']:.3f}, L0 {row['l0']} px"
                      + (f", {row['queries']} queries" if row["queries"] is not None else "")
                      + f", {result.seconds:.1f} s; figure: {out}")

    @app.command("attack-eval")
    def attack_eval_command(
        data: Annotated[Path, typer.Argument(help="folder of images (sub-folders named by class id/name give labels)")],
        method: Annotated[str, typer.Option("--method", help=METHODS_HELP)] = "pgd",
        eps: Annotated[Optional[str], typer.Option("--eps", help="budget in pixel units, e.g. 8/255")] = None,
        option: Annotated[list[str], typer.Option("--option", "-o", help="method option KEY=VALUE")] = [],  # noqa: B006
        batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
        size: Annotated[int, typer.Option("--size", help="resize images to SIZE x SIZE")] = 224,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        model: ModelOption = DEFAULT_MODEL, weights: WeightsOption = None, arch: ArchOption = None,
        trust: TrustOption = False, device: DeviceOption = "auto",
    ) -> None:
        """Success rate and robust accuracy of an attack over a folder (with a progress bar)."""
        ATTACKS.get(method)
        total = len(image_files(data))
        classifier = open_model(model, weights, arch, trust, device)
        report = evaluate_attack(classifier, load_folder(data, size, batch_size), method, parse_eps(eps),
                                 progress=True, total=total, seed=seed, **parse_options(option))
        table = Table(title=f"{method} on {data} ({report.images} images, {report.labelled} labelled by folder)")
        for column in ("eps", "clean acc", "robust acc", "success", "mean L∞", "mean L2", "queries/img", "time"):
            table.add_column(column, justify="right")
        table.add_row("-" if report.eps is None else f"{255 * report.eps:.2f}/255", f"{100 * report.clean_accuracy:.1f}%",
                      f"{100 * report.robust_accuracy:.1f}%", f"{100 * report.success_rate:.1f}%",
                      f"{255 * report.mean_linf:.2f}/255", f"{report.mean_l2:.3f}",
                      "-" if report.mean_queries is None else f"{report.mean_queries:.0f}", f"{report.seconds:.1f} s")
        console.print(table)

    @app.command("fooling")
    def fooling_command(
        classes: Annotated[str, typer.Argument(help="comma-separated class ids or names, e.g. strawberry,volcano")],
        encoding: Annotated[str, typer.Option("--encoding", help="cppn | direct")] = "cppn",
        generations: Annotated[int, typer.Option("--generations")] = 200,
        popsize: Annotated[int, typer.Option("--popsize")] = 32,
        size: Annotated[int, typer.Option("--size", help="image size in pixels")] = 64,
        threshold: Annotated[float, typer.Option("--threshold", help="stop a class at this confidence")] = 0.99,
        out: Annotated[Path, typer.Option("--out", help="gallery to write (.png)")] = Path("fooling.png"),
        seed: Annotated[int, typer.Option("--seed")] = 0,
        model: ModelOption = DEFAULT_MODEL, weights: WeightsOption = None, arch: ArchOption = None,
        trust: TrustOption = False, device: DeviceOption = "auto",
    ) -> None:
        """Evolve fooling images (Nguyen 2015) for a list of classes and draw the gallery."""
        import torch

        classifier = open_model(model, weights, arch, trust, device)
        ids = [class_index(name, classifier.labels) for name in classes.split(",") if name.strip()]
        if not ids:
            raise ConvscopeError("give at least one class")
        result = fooling_images(classifier, ids, encoding=encoding, generations=generations, popsize=popsize,
                                size=size, threshold=threshold, generator=torch.Generator().manual_seed(seed),
                                progress=True)
        fooling_gallery(classifier, result, output_path(out))
        for class_id, confidence, spent in zip(ids, result.confidence.tolist(), result.queries.tolist()):
            name = classifier.labels[class_id] if classifier.labels else str(class_id)
            console.print(f"{name}: {100 * confidence:.1f}% after {spent} queries")
        console.print(f"gallery: {out}")

    @app.command("patch")
    def patch_command(
        target: Annotated[str, typer.Option("--target", help="class name or id the patch pushes towards")] = "zebra",
        images: Annotated[Optional[Path], typer.Option("--images", help="folder of training photos (default: 4 bundled)")] = None,
        held_out: Annotated[Optional[Path], typer.Option("--held-out", help="folder of test photos (default: 4 other bundled)")] = None,
        size: Annotated[int, typer.Option("--size", help="image side")] = 128,
        patch_size: Annotated[int, typer.Option("--patch-size", help="patch resolution")] = 48,
        scale: Annotated[str, typer.Option("--scale", help="patch side as a fraction of the image side: LOW,HIGH")] = "0.3,0.45",
        steps: Annotated[int, typer.Option("--steps")] = 200,
        lr: Annotated[float, typer.Option("--lr")] = 0.05,
        out: Annotated[Path, typer.Option("--out", "-o", help="figure: the patch and patched test photos (.png)")] = Path("patch.png"),
        seed: Annotated[int, typer.Option("--seed")] = 0,
        model: ModelOption = DEFAULT_MODEL, weights: WeightsOption = None, arch: ArchOption = None,
        trust: TrustOption = False, device: DeviceOption = "auto",
    ) -> None:
        """Adversarial patch (Brown 2017): train one round sticker that turns photos into TARGET."""
        import torch

        from ..attacks.patch import (HELD_OUT_SAMPLES, TRAIN_SAMPLES, adversarial_patch, patch_figure,
                                     patch_success)
        from ..images import load_image

        try:
            low, high = (float(v) for v in scale.split(","))
        except ValueError:
            raise ConvscopeError(f"--scale takes LOW,HIGH like 0.3,0.45; got {scale!r}") from None
        classifier = open_model(model, weights, arch, trust, device)
        move = next(classifier.parameters()).device

        def photos(folder, names):
            if folder is None:
                return torch.cat([load_image(f"sample:{name}", size) for name in names]).to(move)
            batches = [batch.images for batch in load_folder(folder, size)]
            if not batches:
                raise ConvscopeError(f"no readable images in {folder}")
            return torch.cat(batches).to(move)

        train, test = photos(images, TRAIN_SAMPLES), photos(held_out, HELD_OUT_SAMPLES)
        goal = class_index(target, classifier.labels)
        result = adversarial_patch(classifier, train, goal, size=patch_size, scale=(low, high), steps=steps, lr=lr,
                                   generator=torch.Generator().manual_seed(seed), progress=True)
        rate = patch_success(classifier, test, result.patch, goal, scale=(low, high),
                             generator=torch.Generator().manual_seed(seed + 1))
        patch_figure(classifier, test, result, output_path(out), scale=(low, high),
                     generator=torch.Generator().manual_seed(seed + 2))
        save_image(result.patch[None], output_path(out.with_name(out.stem + "_alone.png")))
        name = classifier.labels[goal] if classifier.labels else str(goal)
        console.print(f"patch -> {name!r}: log P {result.history[0]:.2f} -> {result.history[-1]:.2f} ({result.stopped}); "
                      f"held-out success {100 * rate:.0f}% ({len(test)} photos x 8 placements) -> {out}")


@tour_step(40, "adversarial example (targeted PGD, eps 4/255)")
def attack_step(model, image, out: Path) -> list[Path]:
    targeted = attack(model, image, method="pgd", eps=4 / 255, target="zebra", steps=15, alpha=1 / 255, seed=0)
    attack_figure(targeted, 0, out / "attack_pgd.png")
    attack_figure(attack(model, image, method="fgsm", eps=2 / 255), 0, out / "attack_fgsm.png")
    return [out / "attack_pgd.png", out / "attack_fgsm.png"]


@tour_step(41, "fooling image (CPPN evolution, Nguyen 2015)")
def fooling_step(model, image, out: Path) -> list[Path]:
    import torch

    result = fooling_images(model, [949], generations=40, generator=torch.Generator().manual_seed(0))
    fooling_gallery(model, result, out / "fooling.png")
    return [out / "fooling.png"]
