"""Speed of convscope's feature visualization next to torch-lucent's ``render_vis`` and a bare
forward+backward, on the embedded EfficientNet-Lite0, same objective, image size and steps.

    python benchmarks/synthesis.py [--size 224] [--steps 20] [--threads 2] [--quality]

``--quality`` also measures the success criteria (activation vs every bundled photo, vs
plain pixel ascent; class visualization probability; inversion error per layer; style loss
drop), which takes several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import torch

import convscope
from convscope.optimize import channel, render

LAYER, CHANNEL = "blocks.4", 10


def timed_interleaved(functions: dict, rounds: int = 3) -> dict:
    """Best wall time of each function over ``rounds``, running them in turn each round (so a
    change in machine load hits all of them alike)."""
    best = {name: float("inf") for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            try:
                function()
            except Exception as error:  # report, do not hide, why a library could not run
                print(f"{name} could not run: {type(error).__name__}: {error}")
                best[name] = None
                continue
            if best[name] is not None:
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds for name, seconds in best.items() if seconds is not None}


def lucent_render(model, size: int, steps: int):
    import kornia
    from kornia.geometry import transform as geometry

    # lucent 0.1.8 calls kornia's pre-0.5 top-level names; point them at their current homes.
    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(geometry, name))
    from lucent.optvis import param, render as lucent

    torch.manual_seed(0)
    return lucent.render_vis(model, f"network_{LAYER.replace('.', '_')}:{CHANNEL}",
                             param_f=lambda: param.image(size, fft=True, decorrelate=True),
                             thresholds=(steps,), preprocess=False, progress=False, show_image=False,
                             fixed_image_size=size)  # lucent upsamples < 224 px unless told the size


def speed(size: int, steps: int) -> None:
    model = convscope.load_model()
    x = torch.rand(1, 3, size, size)

    def bare():
        with convscope.frozen(model):
            for _ in range(steps):
                image = x.clone().requires_grad_(True)
                model(image).sum().backward()

    ours = lambda: render(model, channel(LAYER, CHANNEL), size=size, steps=steps, progress=False)
    rows = list(timed_interleaved({"bare forward+backward": bare, "convscope render": ours,
                                   "lucent render_vis": lambda: lucent_render(model, size, steps)}).items())
    base = rows[0][1]
    print(f"\nfeature visualization, {LAYER}:{CHANNEL}, {size}px, {steps} steps, {torch.get_num_threads()} threads")
    print(f"{'method':<24}{'s/step':>9}{'steps/s':>9}{'× bare':>8}")
    for name, seconds in rows:
        print(f"{name:<24}{seconds / steps:>9.3f}{steps / seconds:>9.2f}{seconds / base:>8.2f}")
    if len(rows) == 3:
        print(f"convscope steps/s ÷ lucent steps/s = {rows[2][1] / rows[1][1]:.2f}")


def quality(size: int, steps: int) -> None:
    from convscope.optimize import invert, photo_scores, stylize, visualize_class
    from convscope.predictions import predict

    model = convscope.load_model()
    print(f"\nactivation maximization at {size}px, {steps} steps (ratio = optimized / best of {len(convscope.images.SAMPLES)} photos)")
    for layer, index in (("blocks.2", 5), ("blocks.4", 10), ("blocks.5", 20)):
        objective = channel(layer, index)
        best_photo = max(photo_scores(model, objective, size).values())
        full = float(render(model, objective, size=size, steps=steps, progress=False).scores[0])
        plain = float(render(model, objective, size=size, steps=steps, param="pixel", decorrelate=False,
                             transforms=None, progress=False).scores[0])
        print(f"  {layer}:{index:<4} optimized {full:8.3f}  plain pixels {plain:8.3f}  best photo {best_photo:8.3f}"
              f"  ratio {full / best_photo:5.2f}")
    shown = visualize_class(model, "espresso", size=size, steps=steps, progress=False)
    top = predict(model, shown.image, 1)[0][0]
    print(f"class 'espresso' ({size}px, {steps} steps): predicted {top.label!r} p={top.probability:.3f}")
    chelsea = convscope.load_image("sample:chelsea", size)
    for layer in ("bn1", "blocks.1", "blocks.2", "blocks.4", "bn2"):
        result = invert(model, chelsea, layer, steps=steps, progress=False)
        print(f"inversion {layer:<9} relative error {float(result.relative_error[0]):.3f}")
    styled = stylize(model, chelsea, convscope.load_image("sample:brick", size), steps=steps, progress=False)
    drop = 1 - float(styled.final_style_loss[0]) / styled.initial_style_loss
    print(f"style (chelsea + brick, {size}px, 150 steps): style loss {styled.initial_style_loss:.3f} -> "
          f"{float(styled.final_style_loss[0]):.3f} (-{drop:.0%}), content loss 0 -> {float(styled.final_content_loss[0]):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--quality-size", type=int, default=96)
    parser.add_argument("--quality-steps", type=int, default=128)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    speed(options.size, options.steps)
    if options.quality:
        quality(options.quality_size, options.quality_steps)
