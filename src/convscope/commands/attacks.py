"""CLI commands ``attack`` (the classic figure), ``attack-eval`` (a folder), ``fooling``, ``patch``, and their tour step."""

from __future__ import annotations

__all__ = [
    "app",
    "attack_command",
    "attack_eval_command",
    "attack_step",
    "fooling_command",
    "fooling_step",
    "parse_eps",
    "parse_options",
    "patch_command",
    "transfer_matrix_command",
]

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import (
    ModelArgs,
    NamesHelp,
    console,
    data_preprocess,
    model_options,
    open_image,
    output_path,
    parse_budget,
    parse_set,
)
from .data_options import (
    AddressOption,
    DataArgument,
    DataLabelsOption,
    EngineOption,
    ResumeOption,
    StrictOption,
    WorkersOption,
    check_engine,
)
from ..errors import ConvscopeError
from ..tour import tour_step

app = typer.Typer()


def parse_eps(text: str | None) -> float | None:
    """``"8/255"``, ``"0.03"`` or None -> float (pixel units)."""
    return parse_budget(text, "--eps")


def parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs (values as JSON when possible: 10, 0.5, true; fractions like 1/255) -> keyword options."""
    return parse_set(pairs)


def _run_attack(method: str, run):
    """Run an attack; an option the method does not take is one line, not a traceback."""
    try:
        return run()
    except TypeError as error:
        text = str(error)
        if "unexpected keyword argument" in text:
            raise ConvscopeError(
                f"{method} does not take the option {text.split('argument')[-1].strip()} "
                f"(see: python -c 'import convscope.attacks as a; help(a.{method.replace('-', '_')})')"
            ) from None
        raise


@app.command("attack", cls=NamesHelp)
@model_options
def attack_command(
    image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
    method: Annotated[str, typer.Option("--method", help="{attacks}")] = "pgd",
    eps: Annotated[
        Optional[str], typer.Option("--eps", help="budget in pixel units, e.g. 8/255 (default: the method's)")
    ] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="class id or name (targeted attack)")] = None,
    option: Annotated[
        list[str],
        typer.Option("--set", "--option", help="method option KEY=VALUE, repeat (--set steps=20 --set alpha=1/255)"),
    ] = [],  # noqa: B006
    out: Annotated[Path, typer.Option("--out", "-o", help="figure to write (.png)")] = Path("attack.png"),
    save_adversarial: Annotated[
        Optional[Path], typer.Option("--save-adversarial", help="also write the adversarial image (.png)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[Optional[int], typer.Option("--size", help="resize the image to SIZE x SIZE")] = None,
    model: ModelArgs = None,
) -> None:
    """Attack one image and draw original | perturbation (amplified) | adversarial."""
    from ..attacks import ATTACKS, attack
    from ..attacks.figure import attack_figure
    from ..images import save_image

    ATTACKS.get(method)
    classifier = model.open()
    x = open_image(image, classifier, size)
    options = parse_options(option)
    result = _run_attack(
        method,
        lambda: attack(
            classifier, x, method=method, eps=parse_eps(eps), target=target, seed=seed, progress=True, **options
        ),
    )
    attack_figure(result, 0, output_path(out), model_name=classifier.name)
    if save_adversarial is not None:
        save_image(result.x_adv, output_path(save_adversarial))
    row = result.rows()[0]
    console.print(
        f"{method}: {row['original']} ({100 * row['original_confidence']:.1f}%) -> {row['adversarial']} "
        f"({100 * row['confidence']:.1f}%), {'fooled' if row['success'] else 'not fooled'}; "
        f"L∞ {255 * row['linf']:.2f}/255, L2 {row['l2']:.3f}, L0 {row['l0']} px"
        + (f", {row['queries']} queries" if row["queries"] is not None else "")
        + f", {result.seconds:.1f} s; figure: {out}"
    )


@app.command("attack-eval", cls=NamesHelp)
@model_options
def attack_eval_command(
    data: DataArgument = "samples:imagenet",
    method: Annotated[str, typer.Option("--method", help="{attacks}")] = "pgd",
    eps: Annotated[Optional[str], typer.Option("--eps", help="budget in pixel units, e.g. 8/255")] = None,
    option: Annotated[
        list[str], typer.Option("--set", "--option", help="method option KEY=VALUE, repeat (--set steps=20)")
    ] = [],  # noqa: B006
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    size: Annotated[Optional[int], typer.Option("--size", help="image side (default: the model's input size)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", help="the first N images (default: all)")] = None,
    data_labels: DataLabelsOption = None,
    strict: StrictOption = False,
    resume: ResumeOption = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="also write the totals and a RobustBench-style entry as JSON")
    ] = None,
    csv_out: Annotated[
        Optional[Path], typer.Option("--csv", help="also write one row per image (robust, broken_by, distances)")
    ] = None,
    model: ModelArgs = None,
) -> None:
    """Clean accuracy, robust accuracy (95 % Wilson interval) and attack success rate over a dataset.

    ``--method autoattack`` runs the AutoAttack protocol (``--set version=standard|plus|rand``).
    """
    from ..attacks import ATTACKS
    from ..attacks.evaluate import evaluate_attack

    ATTACKS.get(method)
    check_engine(engine)
    if size is not None and size < 1:
        raise ConvscopeError(f"--size must be a positive integer, got {size}")
    classifier = model.open()
    options = parse_options(option)
    source = data
    if limit is not None:
        from ..data import open_dataset, take

        opened = open_dataset(
            data, size or classifier.input_size, data_preprocess(classifier), classifier.labels, label_file=data_labels
        )
        source = take(opened, limit)
    report = _run_attack(
        method,
        lambda: evaluate_attack(
            classifier,
            source,
            method,
            parse_eps(eps),
            progress=True,
            seed=seed,
            batch_size=batch_size,
            size=size,
            preprocess=data_preprocess(classifier),
            strict=strict,
            resume=resume,
            engine=engine,
            address=address,
            workers=workers,
            label_file=data_labels,
            **options,
        ),
    )
    truth = (
        "ground-truth labels"
        if report.ground_truth
        else f"{report.labelled} labelled, the others scored against the model's clean predictions"
    )
    shown = data if limit is None else f"{data} (first {limit})"
    table = Table(title=f"{method} on {shown} ({report.images} images, {truth})")
    for column in (
        "eps",
        "clean acc",
        "robust acc [95% CI]",
        "success (of correct)",
        "mean L∞",
        "mean L2",
        "queries/img",
        "time",
    ):
        table.add_column(column, justify="right")
    low, high = report.robust_interval
    table.add_row(
        "-" if report.eps is None else f"{255 * report.eps:.2f}/255",
        f"{100 * report.clean_accuracy:.1f}%",
        f"{100 * report.robust_accuracy:.1f}% [{100 * low:.1f}, {100 * high:.1f}]",
        f"{100 * report.success_rate:.1f}% of {report.attacked}",
        f"{255 * report.mean_linf:.2f}/255",
        f"{report.mean_l2:.3f}",
        "-" if report.mean_queries is None else f"{report.mean_queries:.0f}",
        f"{report.seconds:.1f} s",
    )
    console.print(table)
    if report.skipped:
        from ..data import SkipLog

        console.print(SkipLog(report.skipped).summary())
    if report.resumed_shards:
        console.print(f"resumed: {report.resumed_shards} shard(s) read from {resume}")
    if json_out is not None:
        import json as _json

        version = options.get("version", "standard") if ATTACKS.canonical(method) == "autoattack" else None
        name = getattr(classifier, "name", None) or type(classifier).__name__
        entry = report.robustbench_entry(str(name), str(data), version)
        output_path(json_out).write_text(_json.dumps({**entry, "totals": report.to_dict()}, indent=1))
        console.print(f"JSON: {json_out}")
    if csv_out is not None:
        report.write_csv(output_path(csv_out))
        console.print(f"per-image CSV: {csv_out}")


@app.command("transfer-matrix")
def transfer_matrix_command(
    data: DataArgument = "samples:imagenet",
    models: Annotated[
        str,
        typer.Option("--models", help="comma-separated model sources, e.g. efficientnet_lite0,efficientnet_lite1"),
    ] = "efficientnet_lite0,efficientnet_lite1",
    method: Annotated[str, typer.Option("--method", help="mi-fgsm | di-fgsm | ti-fgsm | any attack")] = "mi_fgsm",
    eps: Annotated[Optional[str], typer.Option("--eps", help="L∞ budget, e.g. 16/255")] = "16/255",
    option: Annotated[
        list[str],
        typer.Option("--set", "--option", help="method option KEY=VALUE (diversity=0.5, kernel=7 combine DI/TI)"),
    ] = [],  # noqa: B006
    size: Annotated[int, typer.Option("--size", help="image side fed to every model")] = 224,
    limit: Annotated[int, typer.Option("--limit", help="at most this many images")] = 64,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="heatmap (.png)")] = Path("transfer-matrix.png"),
    csv_out: Annotated[Path, typer.Option("--csv", help="matrix as CSV")] = Path("transfer-matrix.csv"),
    device: Annotated[str, typer.Option("--device")] = "auto",
    trust: Annotated[bool, typer.Option("--trust", help="allow weights files that need unpickling")] = False,
) -> None:
    """Attack every model (source) and score every model (target) on the results: a transfer heatmap and CSV."""
    import torch

    from ..attacks.transferable import transfer_matrix
    from .common import model_args
    from ..data import open_dataset

    names = [name.strip() for name in models.split(",") if name.strip()]
    if len(names) < 2:
        raise ConvscopeError("--models needs at least two comma-separated models")
    loaded = {name: model_args(name, device=device, trust=trust).open() for name in names}
    first = next(iter(loaded.values()))
    dataset = open_dataset(data, size, "resize", labels=getattr(first, "labels", None))
    items = [dataset[i] for i in range(min(limit, len(dataset)))]
    if not items or any(item[1] is None for item in items):
        raise ConvscopeError(f"transfer-matrix needs labelled images; {data} has none or unlabelled ones")
    from ..checks import model_device

    x = torch.stack([item[0] for item in items]).to(model_device(first))
    y = torch.tensor([int(item[1]) for item in items], device=x.device)
    matrix = transfer_matrix(loaded, x, y, method, parse_eps(eps), seed=seed, **parse_options(option))
    matrix.plot(output_path(out))
    matrix.write_csv(output_path(csv_out))
    table = Table(title=f"{method} eps {eps}: success rate (rows: source, columns: target; {len(items)} images)")
    table.add_column("source")
    for name, count in zip(matrix.names, matrix.counted):
        table.add_column(f"{name} ({count} correct)", justify="right")
    for name, row in zip(matrix.names, matrix.rate):
        table.add_row(name, *[f"{100 * v:.1f}%" for v in row])
    console.print(table)
    console.print(f"heatmap: {out}  CSV: {csv_out}")


@app.command("fooling")
@model_options
def fooling_command(
    classes: Annotated[str, typer.Argument(help="comma-separated class ids or names, e.g. strawberry,volcano")],
    encoding: Annotated[str, typer.Option("--encoding", help="cppn | direct")] = "cppn",
    generations: Annotated[int, typer.Option("--generations")] = 200,
    popsize: Annotated[int, typer.Option("--popsize")] = 32,
    size: Annotated[int, typer.Option("--size", help="image size in pixels")] = 64,
    threshold: Annotated[float, typer.Option("--threshold", help="stop a class at this confidence")] = 0.99,
    out: Annotated[Path, typer.Option("--out", "-o", help="gallery to write (.png)")] = Path("fooling.png"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model: ModelArgs = None,
) -> None:
    """Evolve fooling images (Nguyen 2015) for a list of classes and draw the gallery."""
    import torch

    from ..attacks.evolution import fooling_gallery, fooling_images
    from ..targets import class_index, class_name

    classifier = model.open()
    ids = [class_index(name, classifier.labels) for name in classes.split(",") if name.strip()]
    if not ids:
        raise ConvscopeError("give at least one class")
    result = fooling_images(
        classifier,
        ids,
        encoding=encoding,
        generations=generations,
        popsize=popsize,
        size=size,
        threshold=threshold,
        generator=torch.Generator().manual_seed(seed),
        progress=True,
    )
    fooling_gallery(classifier, result, output_path(out))
    for class_id, confidence, spent in zip(ids, result.confidence.tolist(), result.queries.tolist()):
        name = class_name(classifier.labels, class_id)
        console.print(f"{name}: {100 * confidence:.1f}% after {spent} queries")
    console.print(f"gallery: {out}")


@app.command("patch")
@model_options
def patch_command(
    target: Annotated[str, typer.Option("--target", help="class name or id the patch pushes towards")] = "zebra",
    images: Annotated[
        Optional[Path], typer.Option("--images", help="folder of training photos (default: 4 bundled)")
    ] = None,
    held_out: Annotated[
        Optional[Path], typer.Option("--held-out", help="folder of test photos (default: 4 other bundled)")
    ] = None,
    size: Annotated[int, typer.Option("--size", help="image side")] = 128,
    patch_size: Annotated[int, typer.Option("--patch-size", help="patch resolution")] = 48,
    scale: Annotated[
        str, typer.Option("--scale", help="patch side as a fraction of the image side: LOW,HIGH")
    ] = "0.3,0.45",
    steps: Annotated[int, typer.Option("--steps")] = 200,
    lr: Annotated[float, typer.Option("--lr")] = 0.05,
    out: Annotated[Path, typer.Option("--out", "-o", help="figure: the patch and patched test photos (.png)")] = Path(
        "patch.png"
    ),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model: ModelArgs = None,
) -> None:
    """Adversarial patch (Brown 2017): train one round sticker that turns photos into TARGET."""
    import torch

    from ..attacks.patch import HELD_OUT_SAMPLES, TRAIN_SAMPLES, adversarial_patch, patch_figure, patch_success
    from ..images import load_folder, load_image, save_image
    from ..targets import class_index, class_name

    try:
        low, high = (float(v) for v in scale.split(","))
    except ValueError:
        raise ConvscopeError(f"--scale takes LOW,HIGH like 0.3,0.45; got {scale!r}") from None
    classifier = model.open()
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
    result = adversarial_patch(
        classifier,
        train,
        goal,
        size=patch_size,
        scale=(low, high),
        steps=steps,
        lr=lr,
        generator=torch.Generator().manual_seed(seed),
        progress=True,
    )
    rate = patch_success(
        classifier, test, result.patch, goal, scale=(low, high), generator=torch.Generator().manual_seed(seed + 1)
    )
    patch_figure(
        classifier,
        test,
        result,
        output_path(out),
        scale=(low, high),
        generator=torch.Generator().manual_seed(seed + 2),
        success=rate,
    )
    save_image(result.patch[None], output_path(out.with_name(out.stem + "_alone.png")))
    name = class_name(classifier.labels, goal)
    console.print(
        f"patch -> {name!r}: log P {result.history[0]:.2f} -> {result.history[-1]:.2f} ({result.stopped}); "
        f"held-out success {100 * rate:.0f}% ({len(test)} photos x 8 placements) -> {out}"
    )


@tour_step(40, "adversarial example (targeted PGD, eps 4/255)")
def attack_step(model, image, out: Path) -> list[Path]:
    from ..attacks import attack
    from ..attacks.figure import attack_figure

    targeted = attack(model, image, method="pgd", eps=4 / 255, target="zebra", steps=15, alpha=1 / 255, seed=0)
    attack_figure(targeted, 0, out / "attack_pgd.png", model_name=model.name)
    attack_figure(attack(model, image, method="fgsm", eps=2 / 255), 0, out / "attack_fgsm.png", model_name=model.name)
    return [out / "attack_pgd.png", out / "attack_fgsm.png"]


@tour_step(41, "fooling image (CPPN evolution, Nguyen 2015)")
def fooling_step(model, image, out: Path) -> list[Path]:
    import torch

    from ..attacks.evolution import fooling_gallery, fooling_images

    result = fooling_images(model, [949], generations=40, generator=torch.Generator().manual_seed(0))
    fooling_gallery(model, result, out / "fooling.png")
    return [out / "fooling.png"]
