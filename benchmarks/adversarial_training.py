"""Standard vs adversarial training (PGD: Madry 2018; FGSM-RS: Wong 2020; TRADES: Zhang 2019) on scikit-learn
digits, evaluated with PGD-20 and the AutoAttack protocol: the seeds' trade-off at small scale.

Run: ``python benchmarks/adversarial_training.py [--arch resnet_cifar --arch-options depth=10,width=8]
[--methods standard,pgd,trades] [--seeds 0,1] [--epochs 5] [--eps 0.1] [--autoattack 100]``.
The papers' recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4, ×0.1 at 50 % / 75 % of the epochs, batch
64); PGD-7 / TRADES-7 with alpha 2.5·eps/7. Prints one markdown row per run: clean accuracy (95 % Wilson
interval), PGD-20 on all 360 test digits, AutoAttack standard on the first ``--autoattack`` of them, training
and evaluation seconds. With ``--checkpoint-dir`` the PGD run's training state is kept there
(``benchmarks/autoattack.py`` reads ``pgd.safetensors``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from convscope.robustness.architectures import parse_options, training_classifier
from convscope.robustness.evaluation import evaluate_robustness
from convscope.robustness.training import digits_dataset, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnet_cifar")
    parser.add_argument("--arch-options", default="depth=10,width=8")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--methods", default="standard,pgd,trades")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--autoattack", type=int, default=100, help="first N test digits under AutoAttack (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_data, test_data = digits_dataset(args.size), digits_dataset(args.size, "test")
    print(
        f"digits {args.size} px, {args.arch} {args.arch_options}, eps {args.eps:g}, {args.epochs} epochs, "
        f"{torch.get_num_threads()} threads"
    )
    print("| training | seed | clean acc [95 % CI] | PGD-20 acc | AutoAttack acc, first N | train s | AutoAttack s |")
    print("|---|---|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in args.methods.split(","):
            torch.manual_seed(seed)
            model = training_classifier(args.arch, 10, args.size, options=parse_options(args.arch_options))
            checkpoint = args.checkpoint_dir / f"{method}.safetensors" if args.checkpoint_dir else None
            started = time.perf_counter()
            train(
                model,
                train_data,
                test_data,
                epochs=args.epochs,
                adversarial=None if method == "standard" else method,
                eps=args.eps,
                eval_steps=0,
                seed=seed,
                progress=False,
                checkpoint=checkpoint,
            )
            seconds = time.perf_counter() - started
            pgd20 = evaluate_robustness(model, test_data, args.eps, "pgd", steps=20, seed=seed)
            row = f"| {method} | {seed} | {pgd20.summary().split(', robust')[0].removeprefix('clean ')} | {pgd20.robust_accuracy:.3f} |"
            if args.autoattack:
                auto = evaluate_robustness(model, test_data, args.eps, "autoattack", limit=args.autoattack, seed=seed)
                same = evaluate_robustness(model, test_data, args.eps, "pgd", limit=args.autoattack, seed=seed)
                row += (
                    f" {auto.robust_accuracy:.3f} (PGD-20 on the same {auto.images}: {same.robust_accuracy:.3f}) |"
                    f" {seconds:.0f} | {auto.seconds:.0f} |"
                )
            else:
                row += f" – | {seconds:.0f} | – |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
