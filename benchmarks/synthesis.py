"""Speed of convscope's feature visualization next to torch-lucent's ``render_vis`` and a bare
forward+backward, on the embedded EfficientNet-Lite0, same objective, image size and steps.

    python benchmarks/synthesis.py [--size 224] [--steps 40] [--threads 2] [--quality]

``--quality`` also measures the success criteria (activation vs every bundled photo, vs
plain pixel ascent; class visualization probability; inversion error per layer; style loss
drop), which takes several minutes on 2 cores.
"""

from __future__ import annotations

import argparse

import torch

import convscope
from convscope.optimize import channel, render
from timing import interleaved  # noqa: E402  (benchmarks/timing.py: the shared helper)

LAYER, CHANNEL = "blocks.4", 10


def timed_interleaved(functions: dict, rounds: int = 3) -> dict:
    """Best wall time of each function over ``rounds``, in turn each round; a library that cannot
    run is reported and left out."""
    return interleaved(functions, rounds, "min", warmup=False, keep_going=True)


def lucent_render(model, size: int, steps: int):
    import kornia
    from kornia.geometry import transform as geometry

    # lucent 0.1.8 calls kornia's pre-0.5 top-level names; point them at their current homes.
    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(geometry, name))
    from lucent.optvis import param, render as lucent

    torch.manual_seed(0)
    return lucent.render_vis(
        model,
        f"network_{LAYER.replace('.', '_')}:{CHANNEL}",
        param_f=lambda: param.image(size, fft=True, decorrelate=True),
        thresholds=(steps,),
        preprocess=False,
        progress=False,
        show_image=False,
        fixed_image_size=size,
    )  # lucent upsamples < 224 px unless told the size


def speed(size: int, steps: int) -> None:
    model = convscope.load_model()
    x = torch.rand(1, 3, size, size)

    def bare():
        with convscope.frozen(model):
            for _ in range(steps):
                image = x.clone().requires_grad_(True)
                model(image).sum().backward()

    ours = lambda: render(model, channel(LAYER, CHANNEL), size=size, steps=steps, progress=False)
    rows = list(
        timed_interleaved(
            {
                "bare forward+backward": bare,
                "convscope render": ours,
                "lucent render_vis": lambda: lucent_render(model, size, steps),
            }
        ).items()
    )
    base = rows[0][1]
    print(f"\nfeature visualization, {LAYER}:{CHANNEL}, {size}px, {steps} steps, {torch.get_num_threads()} threads")
    print(f"{'method':<24}{'s/step':>9}{'steps/s':>9}{'× bare':>8}")
    for name, seconds in rows:
        print(f"{name:<24}{seconds / steps:>9.3f}{steps / seconds:>9.2f}{seconds / base:>8.2f}")
    if len(rows) == 3:
        print(f"convscope steps/s ÷ lucent steps/s = {rows[2][1] / rows[1][1]:.2f}")


def quality(size: int, steps: int) -> None:
    from convscope.images import SAMPLES, load_image
    from convscope.optimize import invert, photo_scores, robust_scores, stylize, visualize_class
    from convscope.optimize.objectives import match_activations
    from convscope.optimize.invert import representation
    from convscope.optimize.loop import evaluate
    from convscope.predictions import predict

    model = convscope.load_model()
    photos = torch.cat([load_image(f"sample:{name}", size) for name in SAMPLES])
    print(
        f"\nactivation maximization at {size}px, {steps} steps: optimized (Fourier + decorrelation + transforms)"
        f" vs plain pixel ascent (Adam, no transforms) vs the best of {len(SAMPLES)} bundled photos;"
        f" raw activation, and the mean over 16 random jitter/scale/rotate views"
    )
    print(f"  {'channel':<12}{'raw: ours':>10}{'pixels':>8}{'photo':>8}{'views: ours':>13}{'pixels':>8}{'photo':>8}")
    for layer, index in (
        ("blocks.1", 3),
        ("blocks.2", 5),
        ("blocks.3", 9),
        ("blocks.4", 10),
        ("blocks.5", 20),
        ("blocks.6", 3),
    ):
        objective = channel(layer, index)
        ours = render(model, objective, size=size, steps=steps, progress=False)
        plain = render(
            model, objective, size=size, steps=steps, param="pixel", decorrelate=False, transforms=None, progress=False
        )
        raw = [float(ours.scores[0]), float(plain.scores[0]), max(photo_scores(model, objective, size).values())]
        views = [
            float(robust_scores(model, objective, ours.image, views=16)[0]),
            float(robust_scores(model, objective, plain.image, views=16)[0]),
            float(robust_scores(model, objective, photos, views=16).max()),
        ]
        print(
            f"  {layer + ':' + str(index):<12}{raw[0]:>10.1f}{raw[1]:>8.1f}{raw[2]:>8.1f}{views[0]:>13.1f}{views[1]:>8.1f}{views[2]:>8.1f}"
        )
    shown = visualize_class(model, "espresso", size=size, steps=steps, progress=False)
    top = predict(model, shown.image, 1)[0][0]
    print(f"class 'espresso' ({size}px, {steps} steps): predicted {top.label!r} p={top.probability:.3f}")
    chelsea = convscope.load_image("sample:chelsea", size)
    for layer in ("bn1", "blocks.1", "blocks.2", "blocks.4", "bn2"):
        result = invert(model, chelsea, layer, steps=steps, progress=False)
        print(f"inversion {layer:<9} relative error {float(result.relative_error[0]):.3f}")
    for content_name, style_name in (
        ("chelsea", "brick"),
        ("chelsea", "gravel"),
        ("astronaut", "grass"),
        ("coffee", "brick"),
        ("rocket", "gravel"),
    ):
        content, style = load_image(f"sample:{content_name}", 224), load_image(f"sample:{style_name}", 224)
        styled = stylize(model, content, style, progress=False)
        drop = 1 - float(styled.final_style_loss[0]) / styled.initial_style_loss
        content_term = match_activations(styled.content_layer, representation(model, content, styled.content_layer))
        print(
            f"style {content_name} + {style_name} (224px, defaults): style loss -{drop:.0%}, relative content loss "
            f"0 -> {float(styled.final_content_loss[0]):.3f} (the style photo's own: "
            f"{float(evaluate(model, content_term, style)[0]):.2f})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--quality-size", type=int, default=96)
    parser.add_argument("--quality-steps", type=int, default=128)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    speed(options.size, options.steps)
    if options.quality:
        quality(options.quality_size, options.quality_steps)
