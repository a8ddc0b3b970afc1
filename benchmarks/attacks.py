"""Time convscope's attacks next to torchattacks and a bare forward+backward, in one process.

    python benchmarks/attacks.py [--threads 2] [--size 224] [--batch 2]

Same model (embedded EfficientNet-Lite0), same batch, same steps for both libraries.
Prints seconds (median of repeats) and ratios. DeepFool and one-pixel run at 64 px:
torchattacks' DeepFool back-propagates all 1000 classes per step and its one-pixel
calls scipy per image, so the full size would take minutes; torchattacks' DeepFool is timed
only with --deepfool-reference (374 s against our 1.2 s on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchattacks

import convscope
from convscope.attacks.cw import cw
from convscope.attacks.deepfool import deepfool
from convscope.attacks.evolution import one_pixel
from convscope.attacks.gradient import fgsm, pgd
from convscope.attacks.square import square
from timing import repeat  # noqa: E402  (benchmarks/timing.py: the shared helper)


def timed(function, repeats: int = 3) -> float:
    return repeat(function, repeats, "median")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--deepfool-reference",
        action="store_true",
        help="also time torchattacks' DeepFool (about 6 minutes on a loaded 2-core machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = convscope.load_model("efficientnet_lite0").eval()
    photos = torch.cat([convscope.load_image(f"sample:{name}", args.size) for name in ("chelsea", "coffee")])
    x = photos.repeat((args.batch + 1) // 2, 1, 1, 1)[: args.batch]
    small = F.interpolate(x, size=64, mode="bilinear", antialias=True).clamp(0, 1)
    with torch.no_grad():
        y, y_small = model(x).argmax(1), model(small).argmax(1)

    def forward_backward(images=x, labels=y):
        images = images.clone().requires_grad_(True)
        F.cross_entropy(model(images), labels).backward()

    fb = timed(forward_backward, 5)
    fb_small = timed(lambda: forward_backward(small, y_small), 5)
    rows = []

    def compare(name, ours, theirs, budget=None, repeats=3):
        mine, reference = timed(ours, repeats), timed(theirs, repeats)
        rows.append((name, mine, reference, mine / reference, None if budget is None else mine / budget))

    compare("FGSM", lambda: fgsm(model, x, y, 8 / 255), lambda: torchattacks.FGSM(model, 8 / 255)(x, y), fb)
    compare(
        "PGD-10 L∞",
        lambda: pgd(model, x, y, 8 / 255, 2 / 255, 10, random_start=False),
        lambda: torchattacks.PGD(model, 8 / 255, 2 / 255, 10, random_start=False)(x, y),
        10 * fb,
        repeats=1,
    )
    compare(
        "PGD-10 L2",
        lambda: pgd(model, x, y, 1.0, 0.2, 10, random_start=False, norm="2"),
        lambda: torchattacks.PGDL2(model, 1.0, 0.2, 10, random_start=False)(x, y),
        10 * fb,
        repeats=1,
    )
    compare(
        "C&W 10 steps, all run",
        lambda: cw(model, x, y, steps=10, search_steps=1),
        lambda: torchattacks.CW(model, steps=10)(x, y),
        10 * fb,
        repeats=1,
    )
    compare(
        "C&W 10 steps, both abort early",
        lambda: cw(model, x, y, steps=10, search_steps=1, abort_early=True),
        lambda: torchattacks.CW(model, steps=10)(x, y),
        10 * fb,
        repeats=1,
    )
    if args.deepfool_reference:
        compare(
            "DeepFool 2 steps (64px)",
            lambda: deepfool(model, small, y_small, steps=2),
            lambda: torchattacks.DeepFool(model, steps=2)(small, y_small),
            None,
            repeats=1,
        )
    else:
        mine = timed(lambda: deepfool(model, small, y_small, steps=2), 1)
        rows.append(("DeepFool 2 steps (64px)", mine, float("nan"), float("nan"), mine / (2 * fb_small)))
    compare(
        "Square 100 queries",
        lambda: square(model, x, y, 8 / 255, queries=100),
        lambda: torchattacks.Square(model, eps=8 / 255, n_queries=100)(x, y),
        None,
        repeats=1,
    )
    np.random.seed(0)
    compare(
        "one-pixel pop 50 x 5 (64px)",
        lambda: one_pixel(model, small, y_small, popsize=50, generations=5),
        lambda: torchattacks.OnePixel(model, steps=5, popsize=50)(small, y_small),
        None,
        repeats=1,
    )

    start = time.perf_counter()
    _, used = one_pixel(model, small.repeat(4, 1, 1, 1), y_small.repeat(4), popsize=64, generations=3)
    throughput = float(used.sum()) / (time.perf_counter() - start)
    queries = int(used.sum())
    plain = small.repeat(128, 1, 1, 1)[:256]
    with torch.no_grad():
        forward_rate = plain.shape[0] / timed(lambda: model(plain), 2)

    print(
        f"model efficientnet_lite0, batch {args.batch} x {args.size}px, {args.threads} threads; "
        f"forward+backward {1000 * fb:.0f} ms ({1000 * fb_small:.0f} ms at 64px)"
    )
    print(f"{'attack':32s} {'convscope s':>12s} {'torchattacks s':>15s} {'ratio':>7s} {'/ k x fwd+bwd':>14s}")
    for name, mine, reference, ratio, budget in rows:
        print(f"{name:32s} {mine:12.3f} {reference:15.3f} {ratio:7.2f} {'' if budget is None else f'{budget:14.2f}'}")
    print(
        f"one-pixel query throughput {throughput:.0f} images/s ({queries} queries) vs plain forward "
        f"{forward_rate:.0f} images/s at 64px: ratio {throughput / forward_rate:.2f}"
    )


if __name__ == "__main__":
    main()
