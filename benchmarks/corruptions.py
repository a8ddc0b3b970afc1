"""Throughput of convscope.corrupt next to imagecorruptions (and a bare forward+backward).

Run: ``python benchmarks/corruptions.py [--size 224] [--batch 8] [--ref-images 2]``.
Severity 3 of each of the 19 corruptions, convscope on one batch, imagecorruptions on
``--ref-images`` images one at a time (it has no batch mode); seconds per image and the ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import convscope
from convscope.robustness import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import load_imagecorruptions  # noqa: E402  (the test-suite's shim for the reference)
from timing import repeat  # noqa: E402  (benchmarks/timing.py: the shared helper)


def seconds(function, repeat_count: int = 1) -> float:
    return repeat(function, repeat_count, "mean")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ref-images", type=int, default=2)
    args = parser.parse_args()
    reference = load_imagecorruptions()
    photos = [convscope.load_image(f"sample:{name}", args.size) for name in ("chelsea", "coffee")]
    batch = torch.cat([photos[i % 2] for i in range(args.batch)])
    arrays = [(photo[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for photo in photos]

    model = convscope.load_model("efficientnet_lite0")
    inputs = batch.clone().requires_grad_(True)
    seconds(lambda: model(inputs).sum().backward())
    bare = seconds(lambda: model(inputs).sum().backward(), 2) / args.batch

    print(
        f"{args.size}px, severity 3, convscope batch of {args.batch}, imagecorruptions on {args.ref_images} "
        f"images, {torch.get_num_threads()} threads"
    )
    print(f"{'corruption':<18}{'imagecorruptions s/img':>24}{'convscope s/img':>17}{'speed-up':>10}")
    total_reference = total_ours = 0.0
    for name in BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS:
        convscope.corrupt(batch[:1], name, 3, seed=0)  # warm-up (frost photo cache, kernels)
        ours = seconds(lambda name=name: convscope.corrupt(batch, name, 3, seed=0)) / args.batch
        theirs = (
            sum(
                seconds(lambda a=arrays[i % 2], name=name: reference.corrupt(a, corruption_name=name, severity=3))
                for i in range(args.ref_images)
            )
            / args.ref_images
        )
        total_reference, total_ours = total_reference + theirs, total_ours + ours
        print(f"{name:<18}{theirs:>24.4f}{ours:>17.4f}{theirs / ours:>9.1f}x")
    print(f"{'all 19 (sum)':<18}{total_reference:>24.4f}{total_ours:>17.4f}{total_reference / total_ours:>9.1f}x")
    print(
        f"bare forward+backward of {model.name}: {bare:.4f} s/img "
        f"(all 19 corruptions cost {total_ours / bare:.1f} forward+backward passes per image)"
    )


if __name__ == "__main__":
    main()
