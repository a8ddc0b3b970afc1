"""Standard vs adversarial training (PGD, Madry 2018; fast FGSM-RS, Wong 2020) on scikit-learn digits.

Run: ``python benchmarks/adversarial_training.py [--epochs 8] [--eps 0.1] [--out runs/advtrain]``.
Prints clean and PGD-20 robust test accuracy and the training time of each, writes one plot per run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from convscope.robustness.training import digits_dataset, small_cnn, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("runs/advtrain"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_data, test_data = digits_dataset(), digits_dataset(split="test")
    rows = []
    for method in (None, "fgsm-rs", "pgd"):
        torch.manual_seed(0)
        network = small_cnn()
        history = train(
            network,
            train_data,
            test_data,
            epochs=args.epochs,
            adversarial=method,
            eps=args.eps,
            progress=False,
            checkpoint=args.out / f"{method or 'standard'}.pt",
        )
        history.plot(args.out / f"{method or 'standard'}.png")
        final = history.final
        rows.append(
            (method or "standard", final.clean_accuracy, final.robust_accuracy, sum(e.seconds for e in history.epochs))
        )
        print(
            f"{rows[-1][0]:<10} clean {final.clean_accuracy:.3f}  PGD-20 {final.robust_accuracy:.3f}  "
            f"train {rows[-1][3]:.0f} s",
            flush=True,
        )
    print(f"\ndigits 16 px, eps={args.eps:g}, {args.epochs} epochs, {torch.get_num_threads()} threads")
    print(f"{'training':<10}{'clean acc':>10}{'PGD-20 acc':>12}{'train s':>9}")
    for name, clean, robust, seconds in rows:
        print(f"{name:<10}{clean:>10.3f}{robust:>12.3f}{seconds:>9.0f}")


if __name__ == "__main__":
    main()
