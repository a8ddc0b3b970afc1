"""CLI commands ``corrupt``, ``robustness``, ``train`` and ``defenses``, and their tour step."""

from __future__ import annotations

__all__ = [
    "app",
    "corrupt_command",
    "corruption_grid",
    "corruptions_step",
    "defenses_command",
    "labelled_batches",
    "robustness_command",
    "shape_bias_command",
    "train_command",
]

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from .common import (
    DeviceOption,
    ModelArgs,
    NamesHelp,
    console,
    data_preprocess,
    model_options,
    open_model,
    output_path,
    parse_budget,
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

if TYPE_CHECKING:
    import torch

app = typer.Typer()


def corruption_grid(image: torch.Tensor, severity: int, path: Path, seed: int = 0, model=None) -> Path:
    """One panel per corruption (the 15 + 4) of one image at one severity; with a ``model``, each
    panel also names its top-1 class and probability, and the title how many corruptions changed it."""
    import torch

    from ..predictions import predict
    from ..render import Panel, figure
    from ..robustness.corruptions import CORRUPTIONS, corrupt

    names = ["clean", *CORRUPTIONS.names()]
    images = torch.cat([image] + [corrupt(image, name, severity, seed=seed) for name in names[1:]])
    titles = [name.replace("_", " ") for name in names]
    suptitle = f"ImageNet-C corruptions, severity {severity}"
    if model is not None:
        tops = [ranked[0] for ranked in predict(model, images, 1)]
        titles = [f"{title}\n{top.label} p = {top.probability:.2f}" for title, top in zip(titles, tops)]
        changed = sum(top.class_id != tops[0].class_id for top in tops[1:])
        suptitle = f"{model.name}, {suptitle}: top-1 changed by {changed} of {len(tops) - 1}"
    figure([Panel(x, title) for x, title in zip(images, titles)], path, columns=5, suptitle=suptitle, panel_size=2.2)
    return path


def labelled_batches(
    data: str,
    model,
    size: int,
    limit: int | None,
    batch_size: int = 16,
    strict: bool = False,
    label_file=None,
    preprocess: str = "crop",
):
    """A dataset spec (see :func:`convscope.data.open_dataset`) -> list of (images, labels) and a note,
    for the commands that need the images in memory (``defenses``; at most ``limit`` images).

    Ground-truth labels where the data has them; otherwise the model's prediction on the clean
    image (so the clean error is 0 for those).
    """
    import torch

    from ..data import SkipLog, open_dataset, stream

    dataset = open_dataset(data, size, preprocess, labels=model.labels, label_file=label_file)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    skips = SkipLog()
    images, labels = [], []
    device = next(model.parameters()).device
    for batch in stream(dataset, batch_size, device="cpu", strict=strict, skips=skips, indices=range(count)):
        with torch.no_grad():
            predicted = model(batch.images.to(device)).argmax(-1).cpu()
        images.append(batch.images)
        labels.append(torch.where(batch.labels >= 0, batch.labels, predicted))
    if not images:
        raise ConvscopeError(f"no readable images in {data} ({skips.summary()})")
    if len(skips):
        console.print(skips.summary())
    images, labels = torch.cat(images), torch.cat(labels)
    note = (
        "ground-truth labels"
        if all(label is not None for label in dataset.labels[:count])
        else "labels = the model's clean predictions where the data has none"
    )
    return [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(images), batch_size)], note


def _parse_list(text: str | None, default, known, what: str) -> list:
    if text is None:
        return list(default)
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        if item not in known:
            raise ConvscopeError(f"unknown {what} {item!r}; known: {', '.join(map(str, known))}")
    return items


@app.command("corrupt", cls=NamesHelp)
def corrupt_command(
    image: Annotated[str, typer.Argument(help="image file or sample:NAME")],
    name: Annotated[Optional[str], typer.Option("--name", help="{corruptions} (default: a grid of all)")] = None,
    severity: Annotated[int, typer.Option("--severity", help="1 to 5")] = 3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[int, typer.Option("--size")] = 224,
    out: Annotated[Path, typer.Option("--out", "-o", help="image (one corruption) or grid (.png) to write")] = Path(
        "corrupt.png"
    ),
) -> None:
    """Apply one ImageNet-C corruption (or draw all 19) to an image."""
    from ..images import load_image, save_image
    from ..robustness.corruptions import corrupt

    x = load_image(image, size)
    if name is None:
        corruption_grid(x, severity, output_path(out), seed)
    else:
        save_image(corrupt(x, name, severity, seed=seed), output_path(out))
    console.print(f"wrote {out}")


@app.command("robustness")
@model_options
def robustness_command(
    data: DataArgument = "samples:imagenet",
    baseline: Annotated[
        Optional[str],
        typer.Option("--baseline", help="normalise by this model's errors (default: AlexNet's published ones)"),
    ] = None,
    corruptions: Annotated[
        Optional[str], typer.Option("--corruptions", help="comma-separated names (default: the 15)")
    ] = None,
    severities: Annotated[str, typer.Option("--severities", help="comma-separated, e.g. 1,3,5")] = "1,2,3,4,5",
    limit: Annotated[Optional[int], typer.Option("--limit", help="use the first N images")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[Optional[int], typer.Option("--size")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    clean_error: Annotated[
        Optional[float],
        typer.Option("--clean-error", help="the model's clean error, for relative CE on released corruption files"),
    ] = None,
    data_labels: DataLabelsOption = None,
    strict: StrictOption = False,
    resume: ResumeOption = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", "--out-dir", help="output folder")] = Path("robustness"),
    model: ModelArgs = None,
) -> None:
    """Per-corruption errors, CE, mCE and relative mCE (Hendrycks & Dietterich 2019), CSV and plot.

    DATA is corrupted on the fly, or read as released (ImageNet-C tree, CIFAR-10-C .npy)."""
    from ..robustness.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS
    from ..robustness.imagenet_c import corruption_errors

    from ..data import open_dataset, take

    names = _parse_list(corruptions, BENCHMARK_CORRUPTIONS, CORRUPTIONS.names(), "corruption")
    levels = sorted({int(s) for s in _parse_list(severities, (), ["1", "2", "3", "4", "5"], "severity")})
    if not levels:
        raise ConvscopeError("--severities: give at least one of 1..5")
    if limit is not None and limit < 1:
        raise ConvscopeError(f"--limit must be at least 1, got {limit}")
    check_engine(engine)
    classifier = model.open()
    dataset = open_dataset(
        data,
        size or classifier.input_size,
        data_preprocess(classifier),
        labels=classifier.labels,
        label_file=data_labels,
    )
    if limit is not None:
        dataset = take(dataset, limit)
    released = getattr(dataset, "groups", None) is not None
    note = ("released corruption files" if released else "corrupted on the fly") + (
        ", ground-truth labels"
        if getattr(dataset, "labelled", False)
        else ", labels = the model's clean predictions where missing"
    )
    options = dict(
        seed=seed,
        batch_size=batch_size,
        strict=strict,
        engine=engine,
        address=address,
        workers=workers,
        clean=clean_error,
    )
    result = corruption_errors(
        classifier, dataset, names, levels, resume=resume / "model" if resume else None, **options
    )
    reference = None
    if baseline is not None:
        other = open_model(baseline, device=model.device)
        reference = corruption_errors(
            other, dataset, names, levels, resume=resume / "baseline" if resume else None, **options
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    result.to_csv(out_dir / "corruption_errors.csv", reference)
    result.plot(out_dir / "corruption_errors.png", reference)
    clean_text = "n/a (no clean images; --clean-error)" if result.clean != result.clean else f"{result.clean:.3f}"
    table = Table(
        title=f"{result.model_name} on {result.count} images ({note}); clean error {clean_text}; "
        f"severities {','.join(map(str, levels))}"
    )
    for column in ("corruption", "mean error", "CE", "relative CE"):
        table.add_column(column)
    for name in names:
        ce = result.scored(name, reference)
        table.add_row(
            name,
            f"{result.mean_error(name):.3f}",
            f"{100 * result.corruption_error(name, reference):.1f}%" if ce else "-",
            f"{100 * result.corruption_error(name, reference, relative=True):.1f}%" if ce else "-",
        )
    console.print(table)
    if any(result.scored(name, reference) for name in names if name in BENCHMARK_CORRUPTIONS or reference):
        console.print(
            f"mCE {100 * result.mce(reference):.1f}%, relative mCE "
            f"{100 * result.mce(reference, relative=True):.1f}% "
            f"(normalised by {reference.model_name + ' at the same severities' if reference else 'AlexNet, published errors'})"
        )
    elif not result.all_severities:
        console.print(
            "no CE: AlexNet's published errors average all 5 severities; run 1,2,3,4,5 or give --baseline "
            "(evaluated at the same severities)"
        )
    if result.skipped:
        from ..data import SkipLog

        console.print(SkipLog(result.skipped).summary())
    console.print(f"wrote {out_dir / 'corruption_errors.csv'} and {out_dir / 'corruption_errors.png'}")


@app.command("train", cls=NamesHelp)
def train_command(
    data: Annotated[
        str,
        typer.Argument(
            help="'digits' (scikit-learn, offline) or a labelled dataset spec (class folders, samples:cifar10, "
            "cifar10-train:ROOT, ...)"
        ),
    ],
    test: Annotated[
        Optional[str], typer.Option("--test", help="labelled test set (e.g. cifar10:ROOT); default: a 20 % hold-out")
    ] = None,
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="small_cnn | resnet_cifar (PreAct-ResNet) | wide_resnet_cifar (WRN) | torchvision:NAME | timm:NAME | "
            "an embedded model | package.module:callable",
        ),
    ] = "small_cnn",
    arch_options: Annotated[
        Optional[str],
        typer.Option("--arch-options", help="builder keywords, e.g. depth=18,width=64 or depth=34,widen=10"),
    ] = None,
    pretrained: Annotated[
        bool, typer.Option("--pretrained", help="start from weights already on this machine (never downloads)")
    ] = False,
    adversarial: Annotated[Optional[str], typer.Option("--adversarial", help="{adversarial}")] = None,
    eps_text: Annotated[
        str, typer.Option("--eps", help="L∞ budget (pixel units, e.g. 0.1 or 8/255) of training and evaluation")
    ] = "0.1",
    steps: Annotated[int, typer.Option("--steps", help="steps of the training attack (alpha 2.5·eps/steps)")] = 7,
    trades_beta: Annotated[float, typer.Option("--trades-beta", help="TRADES' β")] = 6.0,
    epochs: Annotated[int, typer.Option("--epochs")] = 8,
    batch_size: Annotated[int, typer.Option("--batch-size", help="per process")] = 64,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd (momentum, weight decay) | adam")] = "sgd",
    lr: Annotated[Optional[float], typer.Option("--lr", help="peak learning rate (default 0.1 SGD, 1e-3 Adam)")] = None,
    momentum: Annotated[float, typer.Option("--momentum")] = 0.9,
    weight_decay: Annotated[
        Optional[float], typer.Option("--weight-decay", help="default 5e-4 (SGD), 0 (Adam)")
    ] = None,
    schedule: Annotated[
        str, typer.Option("--schedule", help="piecewise (×0.1 at 50 % and 75 %) | cosine | constant")
    ] = "piecewise",
    warmup: Annotated[float, typer.Option("--warmup", help="epochs of linear learning-rate warm-up")] = 0.0,
    augment: Annotated[
        bool, typer.Option("--augment", help="random crops (4 px padding) and flips, the papers' CIFAR augmentation")
    ] = False,
    size: Annotated[Optional[int], typer.Option("--size", help="image side (default 16 for digits, else 32)")] = None,
    evaluation: Annotated[
        str, typer.Option("--eval", help="final evaluation: autoattack (standard) | pgd (PGD-20) | none")
    ] = "autoattack",
    eval_size: Annotated[
        Optional[int],
        typer.Option("--eval-size", help="the per-epoch PGD-20 curve on the first N test images (default: all)"),
    ] = None,
    final_eval_size: Annotated[
        Optional[int],
        typer.Option(
            "--final-eval-size",
            help="the final evaluation (--eval) on the first N test images; 0: all (default: as --eval-size)",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the training state in --out (same settings)")
    ] = False,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="epochs between training states")] = 1,
    workers: Annotated[int, typer.Option("--workers", help="loader worker processes")] = 0,
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", "-o", "--out-dir", help="output folder")] = Path("training"),
) -> None:
    """Standard or adversarial training (PGD: Madry 2018; fgsm-rs: Wong 2020; TRADES), evaluated with AutoAttack; runs under torchrun (DDP)."""
    import torch

    from ..devices import resolve_device
    from ..models import save_checkpoint
    from ..robustness.architectures import parse_options, training_classifier
    from ..robustness.evaluation import EVAL_ATTACKS, evaluate_robustness
    from ..robustness.recipe import Recipe
    from ..robustness.training import train, training_split

    eps = parse_budget(eps_text)
    if evaluation not in EVAL_ATTACKS:
        raise ConvscopeError(f"unknown --eval {evaluation!r}; known: {', '.join(EVAL_ATTACKS)}")
    recipe = Recipe(optimizer, lr, momentum, weight_decay, schedule, warmup)
    size = size or (16 if data == "digits" else 32)
    train_data, test_data, names, held_out = training_split(data, size, seed, test)
    name = adversarial or "standard"
    torch.manual_seed(seed)
    model = training_classifier(
        arch, len(names), size, options=parse_options(arch_options), pretrained=pretrained, labels=names
    )
    history = train(
        model,
        train_data,
        test_data,
        epochs,
        adversarial,
        eps,
        steps=steps,
        batch_size=batch_size,
        recipe=recipe,
        eval_steps=0 if evaluation == "none" else 20,
        eval_size=eval_size,
        checkpoint=out_dir / f"{name}.state.safetensors",
        seed=seed,
        device=None if "LOCAL_RANK" in os.environ else resolve_device(device),
        trades_beta=trades_beta,
        resume=resume,
        checkpoint_every=checkpoint_every,
        workers=workers,
        augment=augment,
    )
    final_limit = eval_size if final_eval_size is None else (final_eval_size or None)
    final = evaluate_robustness(model, test_data, eps, evaluation, limit=final_limit, seed=seed, progress=True)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    history.plot(output_path(out_dir / f"{name}.png"), subject=f"{arch} on {data}")
    training = {
        "data": data,
        "test": held_out,
        "adversarial": name,
        "eps": eps,
        "steps": steps,
        "epochs": epochs,
        "recipe": recipe.describe(),
        "augment": augment,
        "history": history.as_records(),
    }
    weights = save_checkpoint(
        model.cpu(), out_dir / f"{name}.safetensors", extra={"training": training, "evaluation": final.as_dict()}
    )
    table = Table(title=f"{name} training of {arch}, eps={eps:g}; {recipe.describe()}")
    for column in ("epoch", "loss", "lr", "clean acc", f"PGD-{history.eval_steps} acc", "seconds"):
        table.add_column(column)
    for r in history.epochs:
        table.add_row(
            str(r.epoch),
            f"{r.loss:.3f}",
            f"{r.lr:.3g}",
            f"{r.clean_accuracy:.3f}",
            f"{r.robust_accuracy:.3f}",
            f"{r.seconds:.1f}",
        )
    console.print(table)
    console.print(f"final evaluation on {held_out}: {final.summary()}")
    console.print(
        f"wrote {out_dir / (name + '.png')}, the training state {out_dir / (name + '.state.safetensors')} "
        f"(--resume continues it) and the self-describing checkpoint {weights} (use it with: -m {weights})"
    )


@app.command("defenses", cls=NamesHelp)
@model_options
def defenses_command(
    data: Annotated[
        str,
        typer.Argument(help="'digits' (with --checkpoint from `convscope train digits`), 'samples', or a folder"),
    ],
    checkpoint: Annotated[
        Optional[Path], typer.Option("--checkpoint", help="small_cnn checkpoint for 'digits'")
    ] = None,
    names: Annotated[Optional[str], typer.Option("--defenses", help="comma-separated, of: {defenses}")] = None,
    eps_text: Annotated[str, typer.Option("--eps", help="L∞ budget in pixel units, e.g. 8/255")] = "8/255",
    steps: Annotated[int, typer.Option("--steps")] = 10,
    eot: Annotated[int, typer.Option("--eot", help="EOT samples for random defenses")] = 8,
    limit: Annotated[Optional[int], typer.Option("--limit")] = 64,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[Optional[int], typer.Option("--size")] = None,
    masking_checks: Annotated[
        bool,
        typer.Option(
            "--masking-checks",
            help="also run the gradient-masking checks on each defense as a naive attacker sees it",
        ),
    ] = False,
    model: ModelArgs = None,
) -> None:
    """Defenses (input transformations, stochastic activation pruning) against naive and adaptive (BPDA/EOT) PGD."""
    import torch

    from ..robustness.defenses import DEFENSES, evaluate_defense
    from ..robustness.training import digits_dataset, small_cnn

    eps = parse_budget(eps_text)
    chosen = _parse_list(names, DEFENSES.names(), DEFENSES.names(), "defense")
    if data == "digits":
        if checkpoint is None:
            raise ConvscopeError("'digits' needs --checkpoint FILE.safetensors written by `convscope train digits`")
        from ..models import load_weights

        side = size or 16
        classifier = load_weights(small_cnn(size=side), checkpoint)
        test = digits_dataset(side, "test")
        x, y = test.tensors[0][:limit], test.tensors[1][:limit]
    else:
        classifier = model.open()
        batches, _ = labelled_batches(
            data,
            classifier,
            size or classifier.input_size,
            limit,
            batch_size=10**6,
            preprocess=data_preprocess(classifier),
        )
        x, y = batches[0]
        x = x.to(next(classifier.parameters()).device)
    table = Table(title=f"defenses, L∞ eps={eps:.4g}, {len(y)} images")
    for column in ("defense", "clean acc", "naive PGD acc", "adaptive acc", "worst case", "adaptive attack") + (
        ("gradient-masking checks failed",) if masking_checks else ()
    ):
        table.add_column(column)
    for name in chosen:
        result = evaluate_defense(classifier, name, x, y, eps, steps, eot_samples=eot, seed=seed, progress=True)
        row = [
            result.defense,
            f"{result.clean_accuracy:.3f}",
            f"{result.naive_accuracy:.3f}",
            f"{result.adaptive_accuracy:.3f}",
            f"{result.worst_case_accuracy:.3f}",
            result.adaptive_attack,
        ]
        if masking_checks:
            import warnings

            from ..attacks.masking import check_gradient_masking

            defended = DEFENSES.get(name)().wrap(classifier, torch.Generator().manual_seed(seed))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the table says it
                report = check_gradient_masking(defended, x, y, eps, steps=steps, seed=seed)
            row.append(", ".join(c.name for c in report.checks if not c.passed) or "none")
        table.add_row(*row)
    console.print(table)


@app.command("shape-bias")
@model_options
def shape_bias_command(
    shapes: Annotated[
        Optional[Path], typer.Option("--shapes", help="FOLDER/<category>/* shape images (default: bundled example)")
    ] = None,
    textures: Annotated[
        Optional[Path], typer.Option("--textures", help="FOLDER/<category>/* texture images (default: --shapes)")
    ] = None,
    size: Annotated[int, typer.Option("--size")] = 128,
    steps: Annotated[int, typer.Option("--steps", help="style-transfer steps")] = 100,
    content_weight: Annotated[float, typer.Option("--content-weight")] = 1.0,
    style_weight: Annotated[float, typer.Option("--style-weight")] = 30.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for cue_conflict.png and shape_bias.png")] = Path(
        "shape_bias"
    ),
    stimuli: Annotated[
        Optional[Path],
        typer.Option(
            "--stimuli",
            help="a cue-conflict stimulus folder in the model-vs-human layout "
            "(<shape>/<shape>N-<texture>M.png): score it instead of making stimuli",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    strict: StrictOption = False,
    workers: WorkersOption = None,
    content_layer: Annotated[
        Optional[str],
        typer.Option("--content-layer", help="style transfer's content layer (default: the model's; printed)"),
    ] = None,
    style_layers: Annotated[
        Optional[str], typer.Option("--style-layers", help="comma-separated style layers (default: the model's)")
    ] = None,
    model: ModelArgs = None,
) -> None:
    """Shape vs texture bias on cue-conflict images (Geirhos et al. 2019), 16 categories."""
    from ..robustness.shape_bias import (
        load_sources,
        make_cue_conflict,
        offline_sources,
        require_imagenet_classifier,
        shape_bias,
    )

    if stimuli is not None:
        from ..robustness.shape_bias import stimulus_shape_bias

        classifier = model.open()
        result, names, skips = stimulus_shape_bias(classifier, stimuli, size, batch_size, strict, workers)
        out.mkdir(parents=True, exist_ok=True)
        result.plot(out / "shape_bias.png", label=classifier.name)
        table = Table(
            title=f"shape bias {result.shape_bias:.3f} (shape {result.shape_hits}, texture "
            f"{result.texture_hits}, {len(result.decisions)} stimuli from {stimuli})"
        )
        for column in ("category", "shape bias", "trials"):
            table.add_column(column)
        for category, (bias, count) in result.per_category().items():
            table.add_row(category, f"{bias:.3f}" if bias == bias else "-", str(count))
        console.print(table)
        if len(skips):
            console.print(skips.summary())
        console.print(f"wrote {out / 'shape_bias.png'}")
        return
    classifier = model.open()
    require_imagenet_classifier(classifier)
    shape_sources = load_sources(shapes, size) if shapes else offline_sources(size)
    texture_sources = load_sources(textures, size) if textures else shape_sources
    move = next(classifier.parameters()).device
    trials = make_cue_conflict(
        classifier,
        [(c, n, x.to(move)) for c, n, x in shape_sources],
        [(c, n, x.to(move)) for c, n, x in texture_sources],
        content_layer=content_layer,
        style_layers=[name.strip() for name in style_layers.split(",")] if style_layers else None,
        steps=steps,
        content_weight=content_weight,
        style_weight=style_weight,
        seed=seed,
    )
    result = shape_bias(classifier, trials)
    out.mkdir(parents=True, exist_ok=True)
    trials.grid(out / "cue_conflict.png", result=result, model_name=classifier.name)
    result.plot(out / "shape_bias.png", label=classifier.name)
    table = Table(
        title=f"shape bias {result.shape_bias:.3f} (shape {result.shape_hits}, texture "
        f"{result.texture_hits}, {len(result.decisions)} trials)"
    )
    for column in ("images", "shape", "texture", "decision"):
        table.add_column(column)
    for name, s, t, d in zip(trials.names, result.shapes, result.textures, result.decisions):
        table.add_row(name, s, t, d + (" (shape)" if d == s else " (texture)" if d == t else ""))
    console.print(table)
    console.print(
        f"style transfer: content layer {trials.content_layer}, style layers {', '.join(trials.style_layers)}"
    )
    console.print(f"wrote {out / 'cue_conflict.png'} and {out / 'shape_bias.png'}")


@tour_step(70, "common corruptions (ImageNet-C, severity 3)")
def corruptions_step(model, image, out: Path) -> list[Path]:
    return [corruption_grid(image, 3, out / "corruptions.png", model=model)]
