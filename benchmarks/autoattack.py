"""APGD and AutoAttack: convscope vs torchattacks vs bare forward(+backward), same model and batch, one run.

Run: ``python benchmarks/autoattack.py [--checkpoint runs/advtrain/pgd.safetensors] [--steps 10] [--threads 1]``
(``--apgd-only --repeats 7 [--inner 5] [--setting digits|resnet_cifar|embedded]``: only APGD-CE-k beside
torchattacks and the bare loop, at k = ``--steps`` and 100 (``--ks``), each timed ``--repeats`` times
interleaved, medians and the spread over rounds; the settings are the digits small_cnn on the first
``--limit`` test digits at eps 0.1, a CIFAR-style PreAct-ResNet (``resnet_cifar``: the
``--cifar-checkpoint`` written by ``convscope train digits --arch resnet_cifar --size 32``, else a
seeded PreAct-ResNet-10 of width 8) on 128 digits at 32 × 32 × 3, eps 8/255 (RobustBench's batch),
and the embedded efficientnet_lite0 on 8 bundled ImageNet samples at 224 px, eps 4/255; labels are the
model's predictions, so that torchattacks, which attacks only correctly classified images, does the
same work as convscope).
Model: the PGD-trained digits small_cnn (a training state of ``train(small_cnn(), ...)``; trained here
if missing: 8 epochs of PGD-7, Adam 3e-3), the 360 test digits, L∞ eps 0.1. Prints robust accuracy, seconds and ratios:

* APGD-CE-k / (k × fwd+bwd of the batch), convscope and torchattacks;
* AutoAttack standard stage by stage: convscope's ``autoattack`` against torchattacks' ``AutoAttack``
  (its own four stage objects, run in its order on the points still robust, exactly as its
  ``MultiAttack`` does, so each stage is timed); ``--steps`` sets convscope's APGD/FAB iterations
  (torchattacks' AutoAttack always uses its 10-step defaults, so ``--steps 10`` compares equal work;
  the paper's 100 is convscope's default);
* Square's cost per image-query against a bare forward pass of the same images.

Times are CPU seconds of this process (``time.process_time``; with one thread they hardly move when
other processes load the machine) and wall seconds. Writes ``benchmarks/results/autoattack-DATE.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from convscope.attacks.apgd import apgd
from convscope.attacks.autoattack import autoattack
from convscope.robustness.recipe import Recipe
from convscope.robustness.train_state import read_training_state
from convscope.robustness.training import digits_dataset, small_cnn, train


class Clock:
    """CPU and wall seconds of a block."""

    def __enter__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def load_model(checkpoint: Path, eps: float, epochs: int = 8) -> torch.nn.Module:
    network = small_cnn()
    if checkpoint.exists():
        state = read_training_state(checkpoint).tensors
        network.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    else:
        torch.manual_seed(0)
        train(
            network,
            digits_dataset(),
            digits_dataset(split="test"),
            epochs=epochs,
            adversarial="pgd",
            eps=eps,
            recipe=Recipe("adam", lr=3e-3, schedule="constant"),
            progress=False,
            checkpoint=checkpoint,
        )
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


def time_apgd(network, x, y, eps: float, k: int, args) -> dict:
    """APGD-CE-k, convscope and torchattacks, against k bare forward+backward passes of the same batch:
    ``args.repeats`` interleaved rounds (bare, convscope, torchattacks, bare, ...), median CPU seconds,
    the per-round ratios' median and range."""
    import statistics

    import torchattacks

    def bare_loop():
        for _ in range(k):
            point = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(network(point), y), point)

    runs = {
        "bare_fwd_bwd": bare_loop,
        "convscope": lambda: apgd(network, x, y, eps, steps=k, generator=torch.Generator().manual_seed(args.seed)),
        "torchattacks": lambda: torchattacks.APGD(network, eps=eps, steps=k, seed=args.seed)(x, y),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            with Clock() as clock:
                for _ in range(args.inner):  # several calls per timing: short runs drown in scheduler noise
                    run()
            seconds[name].append(clock.cpu / args.inner)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    out: dict = {f"{name}_cpu_s": value for name, value in median.items()}
    out["rounds_cpu_s"] = seconds
    out["repeats"] = args.repeats
    for side in ("convscope", "torchattacks"):  # per round: the side over the bare loop of the same round
        ratios = [o / b for o, b in zip(seconds[side], seconds["bare_fwd_bwd"])]
        out[f"{side}_per_k_fwd_bwd"] = statistics.median(ratios)
        out[f"{side}_per_k_fwd_bwd_range"] = [min(ratios), max(ratios)]
    ours, theirs = out["convscope_per_k_fwd_bwd_range"], out["torchattacks_per_k_fwd_bwd_range"]
    print(
        f"APGD-CE-{k}: {k} x fwd+bwd {median['bare_fwd_bwd']:.3f} s | convscope {median['convscope']:.3f} s "
        f"({out['convscope_per_k_fwd_bwd']:.3f} x k fwd+bwd, rounds {ours[0]:.3f}-{ours[1]:.3f}) | "
        f"torchattacks {median['torchattacks']:.3f} s ({out['torchattacks_per_k_fwd_bwd']:.3f} x, "
        f"rounds {theirs[0]:.3f}-{theirs[1]:.3f})",
        flush=True,
    )
    return out


def time_apgd_setting(args) -> None:
    """``--apgd-only``: APGD-CE-k against k bare fwd+bwd and torchattacks in one setting; a dated JSON."""
    import os

    network, x, y, eps = apgd_setting(args.setting, args)
    ks = [int(v) for v in args.ks.split(",")] if args.ks else [args.steps, 100]
    record: dict = {"date": datetime.date.today().isoformat(), "setting": args.setting, "images": list(x.shape)}
    record.update(eps=eps, threads=args.threads, load_before=os.getloadavg()[0])
    for k in ks:
        record[f"apgd_k{k}"] = time_apgd(network, x, y, eps, k, args)
    record["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"apgd-{record['date']}-{args.setting}-k{'_'.join(map(str, ks))}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path} (1-minute load {record['load_before']:.1f} before, {record['load_after']:.1f} after)")


def apgd_setting(name: str, args) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, float]:
    """(model, images, labels = its predictions, eps) of an ``--apgd-only`` timing setting."""
    if name == "digits":
        network = load_model(args.checkpoint, args.eps, args.epochs)
        x, eps = digits_dataset(split="test").tensors[0][: args.limit], args.eps
    elif name == "resnet_cifar":
        from convscope.data.specs import digits_images
        from convscope.models import load_model as open_model
        from convscope.robustness.resnets import resnet_cifar

        torch.manual_seed(args.seed)
        found = args.cifar_checkpoint.exists()
        network = open_model(str(args.cifar_checkpoint)) if found else resnet_cifar(10, depth=10, width=8)
        x, eps = digits_images(32, "test")[0][:128], 8 / 255
    elif name == "embedded":
        from convscope.data import open_dataset
        from convscope.models import load_model as open_model

        network = open_model("efficientnet_lite0")
        data = open_dataset("samples:imagenet", 224)
        x, eps = torch.stack([data[i][0] for i in range(8)]), 4 / 255
    else:
        raise SystemExit(f"unknown --setting {name!r}")
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        y = network(x).argmax(-1)
    return network, x, y, eps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/advtrain/pgd.safetensors"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=360, help="the first LIMIT test digits")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--epochs", type=int, default=8, help="training epochs when the checkpoint is missing")
    parser.add_argument("--apgd-only", action="store_true", help="time APGD-CE only (k = --steps and 100)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the APGD timing (medians)")
    parser.add_argument("--inner", type=int, default=1, help="--apgd-only: calls per timing (mean)")
    parser.add_argument("--setting", default="digits", help="--apgd-only: digits | resnet_cifar | embedded")
    parser.add_argument("--ks", default=None, help="--apgd-only: comma-separated k (default: --steps and 100)")
    parser.add_argument("--cifar-checkpoint", type=Path, default=Path("runs/cifarstyle/s0/pgd.safetensors"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks

    if args.apgd_only:
        return time_apgd_setting(args)
    network = load_model(args.checkpoint, args.eps, args.epochs)
    x, y = (t[: args.limit] for t in digits_dataset(split="test").tensors)
    eps, k = args.eps, args.steps
    record: dict = {"date": datetime.date.today().isoformat(), "images": len(y), "eps": eps, "steps": k}
    record["threads"] = args.threads

    def robust(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return network(images).argmax(-1) == y

    record["apgd"] = time_apgd(network, x, y, eps, k, args)
    with Clock() as total:
        result = autoattack(network, x, y, eps, steps=k, seed=args.seed)
    ours_stages = [{"stage": n, "robust_acc": acc, "wall_s": s} for n, acc, s in result.stages]
    print(
        f"convscope AutoAttack standard ({k} steps): {result.robust_accuracy:.3f} in {total.cpu:.1f} s CPU "
        f"({total.wall:.1f} s wall); stages "
        + ", ".join(f"{r['stage']} {r['robust_acc']:.3f} ({r['wall_s']:.1f} s)" for r in ours_stages),
        flush=True,
    )
    record["convscope"] = {"robust_acc": result.robust_accuracy, "cpu_s": total.cpu, "wall_s": total.wall}
    record["convscope"]["stages"] = ours_stages

    reference = torchattacks.AutoAttack(network, eps=eps, n_classes=10, seed=args.seed)
    alive = robust(x).nonzero()[:, 0]
    final = x.clone()
    their_stages = []
    with Clock() as their_total:
        for stage in reference._autoattack.attacks:  # its MultiAttack's list, in its order
            with Clock() as clock:
                if alive.numel():
                    adv = stage(x[alive], y[alive])
                    with torch.no_grad():
                        broken = network(adv).argmax(-1) != y[alive]
                    final[alive[broken]] = adv[broken]
                    alive = alive[~broken]
            their_stages.append({"stage": stage.attack, "robust_acc": alive.numel() / len(y), "cpu_s": clock.cpu})
    their_acc = float(robust(final).float().mean())
    print(
        f"torchattacks AutoAttack (its 10-step stages): {their_acc:.3f} in {their_total.cpu:.1f} s CPU "
        f"({their_total.wall:.1f} s wall); stages "
        + ", ".join(f"{r['stage']} {r['robust_acc']:.3f} ({r['cpu_s']:.1f} s)" for r in their_stages),
        flush=True,
    )
    record["torchattacks"] = {"robust_acc": their_acc, "cpu_s": their_total.cpu, "wall_s": their_total.wall}
    record["torchattacks"]["stages"] = their_stages
    record["ratio_convscope_over_torchattacks_cpu"] = total.cpu / their_total.cpu

    survivors = x[result.robust]
    with Clock() as forward, torch.no_grad():
        for _ in range(50):
            network(survivors)
    per_image = forward.cpu / (50 * max(len(survivors), 1))
    record["bare_forward_per_image_cpu_us"] = per_image * 1e6
    print(
        f"ratio convscope / torchattacks AutoAttack: {record['ratio_convscope_over_torchattacks_cpu']:.2f} (CPU), "
        f"{total.wall / their_total.wall:.2f} (wall); a bare forward costs {per_image * 1e6:.1f} us per image"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"autoattack-{record['date']}-steps{k}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
