"""Throughput of dataset-example mining next to plain inference (``python benchmarks/dissect.py``).

Times, on the embedded EfficientNet-Lite0 and one batch of bundled photos (crops/flips):
plain forward-only inference, forward+backward, convscope's mining step capturing several
layers at once (hooks + per-channel max + top-k merge), and bare forward hooks taking the same
per-channel max (the floor for any hook route). No anchor library mines top-k examples;
torchvision's FX feature extractor cannot trace this timm model (``Conv2dSame`` pads with
data-dependent control flow), which is why convscope hooks modules instead. Images are in
memory, so file decoding is not timed.
"""

from __future__ import annotations

import tempfile

import torch

import convscope
from convscope.dissect.examples import ImageSource, empty_result, mine_range
from convscope.hooks import frozen
from timing import interleaved, save_results  # noqa: E402  (benchmarks/timing.py: the shared helper)

LAYERS = ["bn1", "blocks.1", "blocks.3", "blocks.5"]
BATCH, SIZE, REPEATS = 16, 224, 5


def timed(functions: dict) -> dict[str, float]:
    """Median seconds of each function; rounds interleave them (load drift hits all alike)."""
    return interleaved(functions, REPEATS, "median")


def main() -> None:
    torch.set_num_threads(2)
    model = convscope.load_model("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as folder:
        source = ImageSource(convscope.sample_folder(folder, n=BATCH), SIZE)
        images = torch.stack([source(i) for i in range(BATCH)])
    memory = ImageSource(images, SIZE)
    result = empty_result(model, LAYERS, 9, SIZE, "cpu")

    def forward():
        with frozen(model), torch.inference_mode():
            model(images)

    def forward_backward():
        with frozen(model):
            x = images.clone().requires_grad_(True)
            model(x).logsumexp(1).sum().backward()

    def mine():
        mine_range(model, memory, result, 0, BATCH, BATCH, "cpu")

    def bare_hooks():  # the least any hook route can cost: a hook taking the channel max, nothing else
        modules = [convscope.find_layer(model, name) for name in LAYERS]

        def channel_max(module, inputs, output) -> None:
            output.flatten(2).max(-1)

        handles = [m.register_forward_hook(channel_max) for m in modules]
        try:
            with frozen(model), torch.inference_mode():
                model(images)
        finally:
            for handle in handles:
                handle.remove()

    rows = list(
        timed(
            {
                "forward only (inference_mode)": forward,
                "forward + backward": forward_backward,
                f"convscope mining, {len(LAYERS)} layers": mine,
                "bare forward hooks + channel max": bare_hooks,
            }
        ).items()
    )
    base = rows[0][1]
    print(
        f"EfficientNet-Lite0, batch {BATCH} x {SIZE} px, {torch.get_num_threads()} threads, median of {REPEATS} interleaved rounds"
    )
    print(f"{'what':40s} {'s/batch':>9s} {'images/s':>9s} {'throughput vs forward':>22s}")
    save_results("dissect", [{"what": name, "seconds_per_batch": seconds} for name, seconds in rows])
    for name, seconds in rows:
        print(f"{name:40s} {seconds:9.3f} {BATCH / seconds:9.1f} {base / seconds:22.2f}")


if __name__ == "__main__":
    main()
