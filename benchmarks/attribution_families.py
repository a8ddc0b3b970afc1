"""CAM-family and Shapley-family speed: convscope next to pytorch-grad-cam / torchcam / captum and bare passes.

Run: ``python benchmarks/attribution_families.py [--batch 2] [--size 112] [--layer blocks.3.0.bn2] [--repeats 2]``.
Same model (embedded EfficientNet-Lite0), same batch, one process; each row runs its bare
reference, convscope and the anchor in turn, ``repeats`` rounds after a warm-up; the median and the spread (min-max) of the per-round ratios,
in wall time and in the process's CPU time, are reported.

"passes" is what a method needs: single-pass CAMs one forward+backward of the batch; Score-CAM
one forward per (image, channel) -- the bare reference is then forwards of ``chunk`` images
for the same number of images; Ablation-CAM the same count of forwards of the network above
``layer`` (the bare reference counts whole forwards, which pytorch-grad-cam runs, so the
ratio < 1 is the saving of running the layers below once per chunk); KernelSHAP / LIME
``samples`` forwards per image; GradientSHAP n forward+backward; DeepLIFT one forward+backward
of the doubled batch (input and reference). Goal: <= 1.1 x the passes, no slower than the anchor.
For Score-CAM and Ablation-CAM the rows through the classifier head per image (a forward hook on
the last Linear: one row per masked / ablated copy, whatever runs below the layer) are counted
for convscope and pytorch-grad-cam next to the C the method needs, and the run is saved to
``benchmarks/results/attribution-families-<date>.json``.
"""

from __future__ import annotations

import argparse
import copy

import torch
from rich.console import Console
from rich.table import Table

import convscope
from timing import ratio_spread, rounds, save_results  # noqa: E402  (benchmarks/timing.py: the shared helper)
from convscope.attribution import attribute
from convscope.attribution.shapley import superpixels
from convscope.hooks import capture, frozen
from convscope.layers import find_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--layer", default="blocks.3.0.bn2", help="layer of Score-CAM / Ablation-CAM (a ReLU6 output)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--samples", type=int, default=64, help="KernelSHAP / LIME coalitions, GradientSHAP n / 8")
    parser.add_argument("--chunk", type=int, default=64, help="masked / ablated images per forward pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="", help="comma-separated method names: run only those rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    model = convscope.load_model().to(device)
    images = torch.cat([convscope.load_image(f"sample:{name}", args.size) for name in ("chelsea", "coffee")])
    x = images.repeat((args.batch + 1) // 2, 1, 1, 1)[: args.batch].to(device)
    targets = ([285, 967] * args.batch)[: args.batch]
    anchor_model = copy.deepcopy(model).eval()
    with torch.no_grad(), capture(model, args.layer, detach=True) as seen:
        model(x)
    channels = seen[args.layer].shape[1]
    samples = args.samples

    def timed(function):
        def run():
            function()
            sync()

        return run

    def bare_fb(copies: int = 1):
        def run():
            with frozen(model):
                inputs = x.repeat(copies, 1, 1, 1).detach().requires_grad_(True)
                torch.autograd.grad(model(inputs)[:, 0].sum(), inputs)

        return run

    def bare_forwards(total: int):
        """``total`` single-image forwards, ``chunk`` images per pass."""
        block = x[:1].expand(args.chunk, -1, -1, -1).contiguous()

        def run():
            with torch.no_grad(), frozen(model):
                for start in range(0, total, args.chunk):
                    model(block[: min(args.chunk, total - start)])

        return run

    from captum import attr as captum
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_targets = [ClassifierOutputTarget(t) for t in targets]

    def grad_cam_lib(kind, layer="bn2", **options):
        layers = [find_layer(anchor_model, layer)] if layer else []

        def run():
            with getattr(pgc, kind)(model=anchor_model, target_layers=layers, **options) as engine:
                if hasattr(engine, "batch_size"):
                    engine.batch_size = args.chunk
                engine(input_tensor=x, targets=cam_targets)

        return run

    def head_rows(function, network) -> float:
        """Rows through ``network``'s last Linear per image during one call of ``function``."""
        head = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
        seen = []
        hook = head.register_forward_hook(lambda module, inputs, output: seen.append(len(output)))
        try:
            function()
        finally:
            hook.remove()
        return sum(seen) / len(x)

    def ours(method, **options):
        return lambda: attribute(model, x, targets, method=method, **options)

    segments = superpixels(x, n_segments=50)

    def captum_superpixels(kind, **options):
        def run():
            for i in range(x.shape[0]):
                kind(anchor_model, **options).attribute(
                    x[i : i + 1],
                    target=targets[i],
                    feature_mask=segments[i : i + 1, None],
                    n_samples=samples,
                    baselines=0.0,
                    perturbations_per_eval=args.chunk,
                )

        return run

    gradient_n = max(1, samples // 8)
    rows = [
        ("hirescam", bare_fb(), 1, ours("hirescam"), grad_cam_lib("HiResCAM"), "pytorch-grad-cam HiResCAM"),
        ("xgradcam", bare_fb(), 1, ours("xgradcam"), grad_cam_lib("XGradCAM"), "pytorch-grad-cam XGradCAM"),
        ("layercam", bare_fb(), 1, ours("layercam"), grad_cam_lib("LayerCAM"), "pytorch-grad-cam LayerCAM"),
        ("eigencam", bare_fb(), 1, ours("eigencam"), grad_cam_lib("EigenCAM"), "pytorch-grad-cam EigenCAM"),
        (
            "fullgrad",
            bare_fb(),
            1,
            ours("fullgrad"),
            grad_cam_lib("FullGrad", layer=None),
            "pytorch-grad-cam FullGrad*",
        ),
        (
            f"scorecam {args.layer} ({channels} ch)",
            bare_forwards(args.batch * channels),
            1,
            ours("scorecam", layer=args.layer, batch_size=args.chunk),
            grad_cam_lib("ScoreCAM", args.layer),
            "pytorch-grad-cam ScoreCAM",
        ),
        (
            f"ablationcam {args.layer} ({channels} ch)",
            bare_forwards(args.batch * channels),
            1,
            ours("ablationcam", layer=args.layer, batch_size=args.chunk),
            grad_cam_lib("AblationCAM", args.layer),
            "pytorch-grad-cam AblationCAM",
        ),
        (
            "deeplift",
            bare_fb(2),
            1,
            ours("deeplift"),
            lambda: captum.DeepLift(anchor_model).attribute(x.clone(), target=targets),
            "captum DeepLift**",
        ),
        (
            f"gradient_shap samples={gradient_n}",
            bare_fb(),
            gradient_n,
            ours("gradient_shap", samples=gradient_n, seed=0),
            lambda: captum.GradientShap(anchor_model).attribute(
                x, baselines=torch.zeros_like(x), target=targets, n_samples=gradient_n
            ),
            "captum GradientShap",
        ),
        (
            f"kernel_shap samples={samples}",
            bare_forwards(args.batch * (samples + 2)),
            1,
            ours("kernel_shap", samples=samples, segments=segments, seed=0, batch_size=args.chunk),
            captum_superpixels(captum.KernelShap),
            "captum KernelShap",
        ),
        (
            f"lime samples={samples}",
            bare_forwards(args.batch * samples),
            1,
            ours("lime", samples=samples, segments=segments, seed=0, batch_size=args.chunk),
            captum_superpixels(captum.Lime),
            "captum Lime",
        ),
    ]
    table = Table(
        "method",
        "convscope s",
        "÷ (passes × bare)",
        "bare s",
        "anchor",
        "anchor s",
        "convscope ÷ anchor",
        title=f"CAM / Shapley families, batch {args.batch} at {args.size}px, {args.threads} threads, {device.type}",
    )
    wanted = [part for part in args.only.split(",") if part]
    saved = []
    for name, bare, passes, mine, anchor, anchor_name in rows:
        if wanted and name.split()[0] not in wanted:
            continue
        per_round = rounds({"bare": timed(bare), "mine": timed(mine), "anchor": timed(anchor)}, args.repeats)
        times = {key: sorted(t[0] for t in values)[len(values) // 2] for key, values in per_round.items()}
        record = {
            "method": name,
            "seconds_median": times,
            "over_bare": ratio_spread(per_round, "mine", "bare", passes),
            "over_anchor": ratio_spread(per_round, "mine", "anchor"),
        }
        if name.startswith(("scorecam", "ablationcam")):
            # the same comparison without the anchor between them (bare, convscope, bare, ...)
            record["over_bare_without_anchor"] = ratio_spread(
                rounds({"bare": timed(bare), "mine": timed(mine)}, args.repeats), "mine", "bare", passes
            )
        if name.startswith(("scorecam", "ablationcam")):
            record["head_rows_per_image"] = {
                "needed": channels,
                "convscope": head_rows(mine, model),
                "anchor": head_rows(anchor, anchor_model),
            }
            print(f"{name}: rows through the head per image {record['head_rows_per_image']}", flush=True)
        saved.append(record)
        cells = (
            name,
            f"{times['mine']:.3f}",
            f"{record['over_bare']['wall']['median']:.2f} ({record['over_bare']['wall']['min']:.2f}-"
            f"{record['over_bare']['wall']['max']:.2f}), CPU {record['over_bare']['cpu']['median']:.2f}",
            f"{times['bare']:.3f}",
            anchor_name,
            f"{times['anchor']:.3f}",
            f"{record['over_anchor']['wall']['median']:.2f}",
        )
        print(" | ".join(cells), record.get("over_bare_without_anchor", ""), flush=True)
        table.add_row(*cells)
    Console(width=170).print(table)
    save_results("attribution-families", saved, batch=args.batch, size=args.size, layer=args.layer, chunk=args.chunk)
    print(
        "* pytorch-grad-cam's FullGrad finds only exact nn.Conv2d/nn.BatchNorm2d modules: on this model (timm "
        "BatchNormAct2d) it computes the input term alone."
    )
    print("** captum's DeepLift only rewrites nn.ReLU-type modules: on this ReLU6 model it is gradient x input.")


if __name__ == "__main__":
    main()
