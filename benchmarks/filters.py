"""convscope.filters next to kornia's differentiable filters and JPEG, on real photos.

Run: ``python benchmarks/filters.py [--size 224] [--rounds 5]``. For the Gaussian blur: the
largest difference to torchvision's ``gaussian_blur`` (the reference) of convscope's and kornia's
``gaussian_blur2d`` (reflect borders, same kernel size), and seconds per batch. For JPEG: the
difference of kornia's ``jpeg_codec_differentiable`` and convscope's libjpeg round trip
(``torchvision.io``) to Pillow's encoder (the reference ImageNet-C and the JPEG defense use), in
mean |difference| (1/255 units) and PSNR, seconds per batch. Saves
``benchmarks/results/filters-<date>.json``.
"""

from __future__ import annotations

import argparse
import io
import math

import kornia
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

import convscope
from convscope.filters import gaussian_blur, jpeg
from timing import interleaved, save_results

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def pillow_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """The reference: Pillow's encoder and decoder, one image at a time."""
    out = []
    for image in x:
        array = (image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    error = float(((a - b) ** 2).mean())
    return math.inf if error == 0 else 10 * math.log10(1 / error)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    x = torch.cat([convscope.load_image(f"sample:{name}", args.size) for name in PHOTOS])
    x = (x * 255).round() / 255  # exact 8-bit values, as a decoded photo is
    rows = []
    print(f"{len(PHOTOS)} photos at {args.size}px, {torch.get_num_threads()} threads, kornia {kornia.__version__}")
    for sigma in (1.0, 2.0, 3.0):
        radius = max(1, int(3 * sigma + 0.5))
        size = 2 * radius + 1
        reference = TF.gaussian_blur(x, [size, size], [sigma, sigma])
        ours = gaussian_blur(x, sigma, radius=radius)
        theirs = kornia.filters.gaussian_blur2d(x, (size, size), (sigma, sigma), border_type="reflect")
        times = interleaved(
            {
                "convscope": lambda: gaussian_blur(x, sigma, radius=radius),
                "kornia": lambda: kornia.filters.gaussian_blur2d(
                    x, (size, size), (sigma, sigma), border_type="reflect"
                ),
                "torchvision": lambda: TF.gaussian_blur(x, [size, size], [sigma, sigma]),
            },
            args.rounds,
        )
        row = {
            "op": "gaussian_blur",
            "sigma": sigma,
            "kernel": size,
            "convscope_max_diff": float((ours - reference).abs().max()),
            "kornia_max_diff": float((theirs - reference).abs().max()),
            **{f"{name}_s": t for name, t in times.items()},
        }
        rows.append(row)
        print(
            f"blur σ={sigma:g} ({size} taps): max |Δ| to torchvision convscope {row['convscope_max_diff']:.1e}, "
            f"kornia {row['kornia_max_diff']:.1e}; s/batch convscope {times['convscope']:.4f}, kornia "
            f"{times['kornia']:.4f}, torchvision {times['torchvision']:.4f}"
        )
    for quality in (75, 30, 10):
        reference = pillow_jpeg(x, quality)
        ours = jpeg(x, quality)
        theirs = kornia.enhance.jpeg_codec_differentiable(x, torch.tensor([float(quality)])).clamp(0, 1)
        times = interleaved(
            {
                "convscope": lambda: jpeg(x, quality),
                "kornia": lambda: kornia.enhance.jpeg_codec_differentiable(x, torch.tensor([float(quality)])),
                "pillow": lambda: pillow_jpeg(x, quality),
            },
            args.rounds,
        )
        row = {
            "op": "jpeg",
            "quality": quality,
            "convscope_mean_diff_255": 255 * float((ours - reference).abs().mean()),
            "kornia_mean_diff_255": 255 * float((theirs - reference).abs().mean()),
            "convscope_max_diff_255": 255 * float((ours - reference).abs().max()),
            "kornia_max_diff_255": 255 * float((theirs - reference).abs().max()),
            "convscope_psnr_to_pillow": psnr(ours, reference),
            "kornia_psnr_to_pillow": psnr(theirs, reference),
            "pillow_psnr_to_input": psnr(reference, x),
            "kornia_psnr_to_input": psnr(theirs, x),
            **{f"{name}_s": t for name, t in times.items()},
        }
        rows.append(row)
        print(
            f"jpeg q={quality}: mean |Δ| to Pillow (1/255) convscope {row['convscope_mean_diff_255']:.2f}, kornia "
            f"{row['kornia_mean_diff_255']:.2f} (max {row['convscope_max_diff_255']:.0f} / "
            f"{row['kornia_max_diff_255']:.0f}); PSNR to Pillow {row['convscope_psnr_to_pillow']:.1f} / "
            f"{row['kornia_psnr_to_pillow']:.1f} dB; to the input: Pillow {row['pillow_psnr_to_input']:.1f}, kornia "
            f"{row['kornia_psnr_to_input']:.1f} dB; s/batch convscope {times['convscope']:.4f}, kornia "
            f"{times['kornia']:.4f}, pillow {times['pillow']:.4f}"
        )
    save_results("filters", rows, size=args.size, photos=list(PHOTOS), rounds=args.rounds)


if __name__ == "__main__":
    main()
