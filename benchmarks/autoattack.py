"""APGD and AutoAttack: convscope vs torchattacks vs bare forward(+backward), same model and batch, one run.

Run: ``python benchmarks/autoattack.py [--checkpoint runs/advtrain/pgd.safetensors] [--steps 10] [--threads 1]``
(``--apgd-only --repeats 7``: only APGD-CE-k beside torchattacks and the bare loop, at k = ``--steps``
and 100, each timed ``--repeats`` times interleaved, medians).
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
    ``args.repeats`` interleaved rounds, median CPU seconds."""
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
                run()
            seconds[name].append(clock.cpu)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    out = {f"{name}_cpu_s": value for name, value in median.items()}
    out["repeats"] = args.repeats
    out["convscope_per_k_fwd_bwd"] = median["convscope"] / median["bare_fwd_bwd"]
    out["torchattacks_per_k_fwd_bwd"] = median["torchattacks"] / median["bare_fwd_bwd"]
    out["convscope_per_k_fwd_bwd_range"] = [
        min(o / b for o, b in zip(seconds["convscope"], seconds["bare_fwd_bwd"])),
        max(o / b for o, b in zip(seconds["convscope"], seconds["bare_fwd_bwd"])),
    ]
    print(
        f"APGD-CE-{k}: {k} x fwd+bwd {median['bare_fwd_bwd']:.3f} s | convscope {median['convscope']:.3f} s "
        f"({out['convscope_per_k_fwd_bwd']:.2f} x k fwd+bwd; per round "
        f"{out['convscope_per_k_fwd_bwd_range'][0]:.2f}-{out['convscope_per_k_fwd_bwd_range'][1]:.2f}) | "
        f"torchattacks {median['torchattacks']:.3f} s ({out['torchattacks_per_k_fwd_bwd']:.2f} x)",
        flush=True,
    )
    return out


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks

    network = load_model(args.checkpoint, args.eps, args.epochs)
    x, y = (t[: args.limit] for t in digits_dataset(split="test").tensors)
    eps, k = args.eps, args.steps
    record: dict = {"date": datetime.date.today().isoformat(), "images": len(y), "eps": eps, "steps": k}
    record["threads"] = args.threads

    def robust(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return network(images).argmax(-1) == y

    for steps in (k, 100) if args.apgd_only else (k,):
        record[f"apgd_k{steps}" if args.apgd_only else "apgd"] = time_apgd(network, x, y, eps, steps, args)
    if args.apgd_only:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"apgd-{record['date']}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path}")
        return

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
