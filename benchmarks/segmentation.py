"""Time convscope's segmentation pieces next to their anchors and a bare forward+backward.

Run: ``python benchmarks/segmentation.py``. Same model, same batch, one process:
* FCN-8s training step (frozen EfficientNet-Lite0 backbone read through ``capture``) vs the
  bare classifier forward+backward on the same batch;
* the fully-convolutional class map (``class_heatmap``) vs a bare forward of the same image;
* ``stamp_transposed_conv`` (the teaching loop) vs ``F.conv_transpose2d``.
"""

import torch
import torch.nn.functional as F

import convscope
from convscope.segmentation import FCN, UNet, class_heatmap, segmentation_loss, stamp_transposed_conv
from timing import repeat, save_results  # noqa: E402  (benchmarks/timing.py: the shared helper)


def timed(function, repeats=5):
    return repeat(function, repeats, "mean", warmup=True)


def main():
    torch.manual_seed(0)
    model = convscope.load_model()
    x = torch.rand(16, 3, 96, 96)
    masks = torch.randint(0, 4, (16, 96, 96))
    fcn, unet = FCN(model, 4, "8s"), UNet(4)

    def bare():
        with convscope.frozen(model):
            x_grad = x.clone().requires_grad_(True)
            model(x_grad).sum().backward()

    def step(net):
        def run():
            net.zero_grad()
            segmentation_loss(net(x), masks).backward()

        return run

    image = convscope.load_image("sample:chelsea", size=(448, 672))

    def forward():
        with torch.no_grad():
            model(image)

    a, w = torch.rand(2, 8, 12, 12), torch.rand(8, 8, 4, 4)
    rows = [
        ("bare forward+backward, lite0, 16x96px", timed(bare), None),
        ("FCN-8s train step (frozen backbone)", timed(step(fcn)), "bare"),
        ("U-Net train step (scratch, 16 wide)", timed(step(unet)), "bare"),
        ("bare forward, lite0, chelsea 448x672", timed(forward), None),
        ("class_heatmap (convolutionalized)", timed(lambda: class_heatmap(model, image, "tabby")), "forward"),
        ("F.conv_transpose2d 2x8x12x12, k4 s2", timed(lambda: F.conv_transpose2d(a, w, stride=2, padding=1), 50), None),
        ("stamp_transposed_conv (loop)", timed(lambda: stamp_transposed_conv(a, w, stride=2, padding=1), 5), "conv"),
    ]
    base = {"bare": rows[0][1], "forward": rows[3][1], "conv": rows[5][1]}
    print(f"{'what':45s} {'seconds':>10s} {'ratio':>8s}")
    save_results(
        "segmentation", [{"what": name, "seconds": seconds, "relative_to": against} for name, seconds, against in rows]
    )
    for name, seconds, against in rows:
        ratio = f"{seconds / base[against]:.2f}x" if against else "1.00x"
        print(f"{name:45s} {seconds:10.4f} {ratio:>8s}")


if __name__ == "__main__":
    main()
