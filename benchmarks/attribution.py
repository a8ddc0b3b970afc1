"""Attribution speed: convscope next to captum / pytorch-grad-cam and a bare forward+backward.

Run: ``python benchmarks/attribution.py [--batch 2] [--size 224] [--repeats 3] [--samples 8]``.
Same model (embedded EfficientNet-Lite0), same batch, one process; each row runs a bare
forward+backward, convscope and the anchor in turn, ``repeats`` rounds after a warm-up, best of each. Goals: single-pass gradient methods <= 1.1 x forward+backward,
SmoothGrad / IG with n samples <= 1.1 x n x forward+backward, and no slower than the anchor.
"""

from __future__ import annotations

import argparse
import copy

import torch
from rich.console import Console
from rich.table import Table

import convscope
from convscope.attribution import attribute
from convscope.hooks import frozen
from convscope.layers import find_layer
from timing import interleaved  # noqa: E402  (benchmarks/timing.py: the shared helper)


def interleaved_best(functions: dict, repeats: int) -> dict:
    """Best wall time of each function after one warm-up, running them in turn in every round."""
    return interleaved(functions, repeats, "min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8, help="SmoothGrad copies and IG steps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = convscope.load_model()
    images = torch.cat([convscope.load_image(f"sample:{name}", args.size) for name in ("chelsea", "coffee")])
    x = images.repeat((args.batch + 1) // 2, 1, 1, 1)[: args.batch]
    targets = [285, 967] * ((args.batch + 1) // 2)
    targets = targets[: args.batch]
    anchor_model = copy.deepcopy(model).eval()  # pytorch-grad-cam needs parameters that require grad
    n = args.samples

    def bare():
        with frozen(model):
            inputs = x.detach().requires_grad_(True)
            torch.autograd.grad(model(inputs)[torch.arange(len(targets)), targets].sum(), inputs)

    from captum import attr as captum
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = find_layer(anchor_model, "bn2")
    cam_targets = [ClassifierOutputTarget(t) for t in targets]

    def grad_cam_lib(kind):
        def run():
            with kind(model=anchor_model, target_layers=[layer]) as engine:
                engine(input_tensor=x, targets=cam_targets)

        return run

    def layer_gradcam():
        raw = captum.LayerGradCam(anchor_model, layer).attribute(x, target=targets, relu_attributions=True)
        captum.LayerAttribution.interpolate(raw, tuple(x.shape[-2:]), interpolate_mode="bilinear")

    def ours(method, **options):
        return lambda: attribute(model, x, targets, method=method, **options)

    def theirs(cls, **options):
        return lambda: cls(anchor_model).attribute(x.clone().requires_grad_(), target=targets, **options)

    rows = [
        ("saliency", 1, ours("saliency"), theirs(captum.Saliency, abs=True), "captum Saliency"),
        ("input_x_gradient", 1, ours("input_x_gradient"), theirs(captum.InputXGradient), "captum InputXGradient"),
        ("guided_backprop", 1, ours("guided_backprop"), theirs(captum.GuidedBackprop), "captum GuidedBackprop*"),
        ("deconvnet", 1, ours("deconvnet"), theirs(captum.Deconvolution), "captum Deconvolution*"),
        ("gradcam", 1, ours("gradcam"), layer_gradcam, "captum LayerGradCam+interp"),
        ("gradcam (vs pytorch-grad-cam)", 1, ours("gradcam"), grad_cam_lib(GradCAM), "pytorch-grad-cam GradCAM"),
        ("gradcam_pp", 1, ours("gradcam_pp"), grad_cam_lib(GradCAMPlusPlus), "pytorch-grad-cam GradCAM++"),
        ("cam", 1, ours("cam"), None, "-"),
        (
            "guided_gradcam",
            2,
            ours("guided_gradcam"),
            lambda: captum.GuidedGradCam(anchor_model, layer).attribute(x.clone().requires_grad_(), target=targets),
            "captum GuidedGradCam*",
        ),
        (
            f"smoothgrad samples={n}",
            n,
            ours("smoothgrad", samples=n, seed=0),
            lambda: captum.NoiseTunnel(captum.Saliency(anchor_model)).attribute(
                x.clone().requires_grad_(), target=targets, nt_type="smoothgrad", nt_samples=n, stdevs=0.15
            ),
            "captum NoiseTunnel(Saliency)",
        ),
        (
            f"integrated_gradients steps={n}",
            n,
            ours("integrated_gradients", steps=n),
            lambda: captum.IntegratedGradients(anchor_model).attribute(x, target=targets, n_steps=n),
            "captum IntegratedGradients",
        ),
    ]
    base = interleaved_best({"bare": bare}, args.repeats)["bare"]
    print(f"bare forward+backward: {base:.3f} s", flush=True)
    table = Table(
        "method",
        "convscope s",
        "÷ (passes × fwd+bwd)",
        "anchor",
        "anchor s",
        "convscope ÷ anchor",
        title=f"attribution, batch {args.batch} at {args.size}px, {args.threads} threads; "
        f"bare forward+backward {base * 1000:.0f} ms (each row: its own, interleaved)",
    )
    for name, passes, mine, anchor, anchor_name in rows:
        times = interleaved_best({"bare": bare, "mine": mine, **({"anchor": anchor} if anchor else {})}, args.repeats)
        t_mine, t_anchor = times["mine"], times.get("anchor")
        cells = (
            name,
            f"{t_mine:.3f}",
            f"{t_mine / (passes * times['bare']):.2f}",
            anchor_name,
            f"{t_anchor:.3f}" if t_anchor else "-",
            f"{t_mine / t_anchor:.2f}" if t_anchor else "-",
        )
        print(" | ".join(cells), flush=True)
        table.add_row(*cells)
    Console(width=160).print(table)
    print(
        "* captum's rectifier rules skip ReLU6, so on this model its guided backprop / deconvnet is a plain gradient."
    )


if __name__ == "__main__":
    main()
