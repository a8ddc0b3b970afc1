"""APGD and AutoAttack: convscope vs torchattacks vs bare forward+backward, same model and batch, one run.

Run: ``python benchmarks/autoattack.py [--checkpoint runs/advtrain/pgd.safetensors] [--steps 100] [--threads 2]``.
Model: the PGD-trained digits small_cnn (a training state of ``train(small_cnn(), ...)``; trained here
if missing: 8 epochs of PGD-7, Adam 3e-3), the 360 test digits, L∞ eps 0.1. Prints robust accuracy, seconds and ratios:
APGD-k / (k × fwd+bwd) and convscope AutoAttack / torchattacks AutoAttack at the same steps
(torchattacks' AutoAttack runs its attacks at their 10-step defaults; ``--steps 10`` matches it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from convscope.attacks.apgd import apgd
from convscope.attacks.autoattack import autoattack
from convscope.robustness.recipe import Recipe
from convscope.robustness.train_state import read_training_state
from convscope.robustness.training import digits_dataset, small_cnn, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/advtrain/pgd.safetensors"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eps", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks

    network = small_cnn()
    if args.checkpoint.exists():
        state = read_training_state(args.checkpoint).tensors
        network.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    else:
        torch.manual_seed(0)
        train(
            network,
            digits_dataset(),
            digits_dataset(split="test"),
            epochs=8,
            adversarial="pgd",
            eps=args.eps,
            recipe=Recipe("adam", lr=3e-3, schedule="constant"),
            progress=False,
            checkpoint=args.checkpoint,
        )
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    x, y = digits_dataset(split="test").tensors
    eps, k = args.eps, args.steps

    def accuracy(images):
        with torch.no_grad():
            return float((network(images).argmax(-1) == y).float().mean())

    start = time.perf_counter()
    for _ in range(k):
        point = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(network(point), y), point)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    ours, _ = apgd(network, x, y, eps, steps=k, generator=torch.Generator().manual_seed(0))
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = torchattacks.APGD(network, eps=eps, steps=k, seed=0)(x, y)
    theirs_s = time.perf_counter() - start
    print(
        f"{k} x fwd+bwd {bare:.2f} s | APGD-CE-{k}: convscope {ours_s:.2f} s (acc {accuracy(ours):.3f}, "
        f"{ours_s / bare:.2f} x k fwd+bwd) | torchattacks {theirs_s:.2f} s (acc {accuracy(theirs):.3f})",
        flush=True,
    )
    start = time.perf_counter()
    result = autoattack(network, x, y, eps, steps=k, seed=0)
    ours_s = time.perf_counter() - start
    print(
        f"convscope AutoAttack standard, {k} steps: {result.robust_accuracy:.3f} in {ours_s:.1f} s; stages "
        + ", ".join(f"{n} {a:.3f} ({s:.1f} s)" for n, a, s in result.stages),
        flush=True,
    )
    start = time.perf_counter()
    reference = torchattacks.AutoAttack(network, eps=eps, n_classes=10, seed=0)(x, y)
    theirs_s = time.perf_counter() - start
    print(
        f"torchattacks AutoAttack (its 10-step defaults): {accuracy(reference):.3f} in {theirs_s:.1f} s; "
        f"ratio convscope/torchattacks {ours_s / theirs_s:.2f}"
    )


if __name__ == "__main__":
    main()
