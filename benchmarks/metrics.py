"""Explanation-metric speed: convscope next to Quantus 0.6 and the bare forward passes the metric needs.

Run: ``python benchmarks/metrics.py [--batch 4] [--size 128] [--threads 2]``. Same model (embedded
EfficientNet-Lite0), images and Grad-CAM maps. "bare" is the metric's model calls (the registry's
``calls``: the clean image's pass included) as plain batched forward passes of the same size; goal:
convscope <= 1.1 x bare. Quantus is run where it has the metric (not deletion / insertion). Saved to ``benchmarks/results/metrics-<date>.json``.
Quantus runs on a one-channel copy of the images (so its features are pixels, as ours).
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table

import convscope
from convscope.attribution import attribute
from convscope.attribution.metrics import METRICS, ROAD_FRACTIONS
from convscope.hooks import frozen
from timing import interleaved, save_results  # noqa: E402  (benchmarks/timing.py: the shared helper)


class Gray(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.expand(-1, 3, -1, -1))


def main() -> None:
    import quantus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = convscope.load_model()
    names = ("chelsea", "coffee", "astronaut", "rocket")
    x = torch.cat([convscope.load_image(f"sample:{n}", args.size) for n in names])[: args.batch]
    gray = x.mean(dim=1, keepdim=True)
    x3 = gray.expand(-1, 3, -1, -1).contiguous()
    with torch.no_grad():
        targets = model(x3).argmax(-1)
    heat = attribute(model, x3, targets, method="gradcam")
    xn, yn, an = gray.numpy(), targets.numpy(), heat.numpy()
    wrapped = Gray(model).eval()
    steps, runs, subset = 16, 32, 224

    def bare(calls: int):
        images = x3.repeat(calls, 1, 1, 1)

        def run():
            with frozen(model), torch.no_grad():
                for i in range(0, len(images), 64):
                    model(images[i : i + 64])

        return run

    cases = [
        (
            "pixel_flipping",
            steps + 1,
            lambda: METRICS.get("pixel_flipping")(model, x3, heat, targets, steps=steps),
            lambda: quantus.PixelFlipping(features_in_step=args.size**2 // steps, disable_warnings=True)(
                model=wrapped, x_batch=xn, y_batch=yn, a_batch=an, device="cpu"
            ),
        ),
        (
            "faithfulness_correlation",
            runs + 1,
            lambda: METRICS.get("faithfulness_correlation")(model, x3, heat, targets, runs=runs, subset=subset),
            lambda: quantus.FaithfulnessCorrelation(
                nr_runs=runs, subset_size=subset, return_aggregate=False, disable_warnings=True
            )(model=wrapped, x_batch=xn, y_batch=yn, a_batch=an, device="cpu"),
        ),
        (
            "deletion",
            steps + 2,
            lambda: METRICS.get("deletion")(model, x3, heat, targets, steps=steps),
            None,
        ),
        (
            "insertion",
            steps + 2,
            lambda: METRICS.get("insertion")(model, x3, heat, targets, steps=steps),
            None,
        ),
        (
            "road_morf",  # the calls are forwards; the noisy linear imputation is on top (no model)
            len(ROAD_FRACTIONS) + 1,
            lambda: METRICS.get("road_morf")(model, x3, heat, targets),
            lambda: quantus.ROAD(
                percentages=[round(100 * f) for f in ROAD_FRACTIONS], return_aggregate=False, disable_warnings=True
            )(model=wrapped, x_batch=xn, y_batch=yn, a_batch=an, device="cpu"),
        ),
        (
            "sparseness",
            0,
            lambda: METRICS.get("sparseness")(model, x3, heat, targets),
            lambda: quantus.Sparseness(disable_warnings=True)(model=None, x_batch=xn, y_batch=yn, a_batch=an.copy()),
        ),
    ]
    table = Table(
        "metric",
        "calls / image",
        "bare calls (s)",
        "convscope (s)",
        "Quantus (s)",
        "convscope / bare",
        "Quantus / convscope",
        title=f"explanation metrics, batch {args.batch} at {args.size} px, {args.threads} threads",
    )
    rows = []
    for name, calls, ours, theirs in cases:
        functions = {"ours": ours} | ({"theirs": theirs} if theirs else {}) | ({"bare": bare(calls)} if calls else {})
        best = interleaved(functions, args.repeats)  # in turn each round: drifting load hits all alike
        t_bare, t_ours, t_theirs = best.get("bare", float("nan")), best["ours"], best.get("theirs", float("nan"))
        rows.append({"metric": name, "calls": calls, "bare_s": t_bare, "convscope_s": t_ours, "quantus_s": t_theirs})
        table.add_row(
            name,
            str(calls),
            f"{t_bare:.3f}",
            f"{t_ours:.3f}",
            f"{t_theirs:.3f}",
            f"{t_ours / t_bare:.2f}" if calls else "-",
            f"{t_theirs / t_ours:.1f}" if theirs else "-",
        )
    Console().print(table)
    save_results("metrics", rows, batch=args.batch, size=args.size, repeats=args.repeats, threads=args.threads)


if __name__ == "__main__":
    main()
