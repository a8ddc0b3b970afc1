"""LRP speed: convscope next to zennit 0.5 and a bare forward+backward of the same model and batch.

Run: ``python benchmarks/lrp.py [--batch 2] [--size 224] [--repeats 3] [--threads 2]``.
Models: the embedded EfficientNet-Lite0 and torchvision ResNet-18 (random weights; the
speed does not depend on them). zennit runs its ``EpsilonGammaBox`` / ``EpsilonAlpha2Beta1Flat``
composites with its ResNet canonizer on ResNet-18 and without canonizer on EfficientNet-Lite0
(its BatchNorm merging needs ``nn.Sequential`` neighbours, timm's blocks are not).
Goal: LRP <= 1.3 x forward+backward. Each round runs bare, convscope and zennit in turn; the
median and the spread (min-max) over the rounds of the per-round ratios are reported in wall time
and in the process's CPU time (what a loaded machine does not inflate), and the rows are saved to
``benchmarks/results/lrp-<date>.json``. Next to the times, the
convolution/matmul FLOPs of convscope's LRP over those of the bare forward+backward (counted at
the dispatcher, ``torch.utils.flop_counter``'s formulas): the floor the times cannot beat, and a
number the machine's load does not move.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torchvision
from rich.console import Console
from rich.table import Table

import convscope
from convscope.attribution import attribute
from convscope.hooks import frozen
from timing import ratio_spread, rounds, save_results  # noqa: E402  (benchmarks/timing.py: the shared helper)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry


class FlopCount(TorchDispatchMode):
    """FLOPs of the convolutions and matrix products run inside the block (autograd's backward too)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._overloadpacket in flop_registry:

            def shape(value):
                return value.shape if isinstance(value, torch.Tensor) else value

            self.total += flop_registry[func._overloadpacket](
                *tree_map(shape, args), **tree_map(shape, kwargs), out_val=tree_map(shape, out)
            )
        return out


def flops(function) -> int:
    with FlopCount() as counter:
        function()
    return counter.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    def EpsilonPlain(canonizers):  # noqa: N802  (a zennit composite: the epsilon rule everywhere)
        return LayerMapComposite(
            layer_map_base() + [(Convolution, Epsilon(1e-6)), (torch.nn.Linear, Epsilon(1e-6))], canonizers=canonizers
        )

    from zennit.torchvision import ResNetCanonizer

    images = torch.cat([convscope.load_image(f"sample:{name}", args.size) for name in ("chelsea", "coffee")])
    x = images.repeat((args.batch + 1) // 2, 1, 1, 1)[: args.batch].to(args.device)
    lite = convscope.load_model().to(args.device)
    resnet = (
        convscope.models.ImageClassifier(torchvision.models.resnet18(), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        .to(args.device)
        .eval()
    )
    table = Table(
        "model",
        "composite",
        "bare fwd+bwd s (median)",
        "convscope / bare: wall median (min-max)",
        "CPU median (min-max)",
        "zennit / bare: wall",
        "CPU",
        "FLOPs convscope / bare",
        title=f"LRP, batch {args.batch} at {args.size} px, {args.threads} threads, {args.device}, "
        f"{args.repeats} interleaved rounds",
    )
    rows = []
    for model, canonizers in ((lite, []), (resnet, [ResNetCanonizer])):
        targets = torch.arange(len(x), device=x.device) + 1
        anchor = copy.deepcopy(model).eval()
        normalized = anchor.normalize(x).detach()
        low, high = anchor.normalize(torch.zeros_like(x)), anchor.normalize(torch.ones_like(x))

        def bare():
            with frozen(model):
                inputs = x.detach().requires_grad_(True)
                torch.autograd.grad(model(inputs).gather(1, targets[:, None]).sum(), inputs)

        for name, make in (
            ("epsilon", lambda: EpsilonPlain(canonizers=[c() for c in canonizers])),
            ("epsilon_gamma_box", lambda: EpsilonGammaBox(low=low, high=high, canonizers=[c() for c in canonizers])),
            ("epsilon_alpha2_beta1_flat", lambda: EpsilonAlpha2Beta1Flat(canonizers=[c() for c in canonizers])),
        ):

            def ours(name=name):
                attribute(model, x, targets, method="lrp", rule=name)

            def theirs(make=make):
                with Gradient(anchor.network, make()) as attributor:
                    attributor(
                        normalized.clone().requires_grad_(True),
                        lambda out: torch.zeros_like(out).scatter(1, targets[:, None], out.gather(1, targets[:, None])),
                    )

            times = rounds({"bare": bare, "ours": ours, "zennit": theirs}, args.repeats)
            flop_ratio = flops(ours) / flops(bare)
            ours_ratio, zennit_ratio = ratio_spread(times, "ours", "bare"), ratio_spread(times, "zennit", "bare")
            rows.append(
                {
                    "model": model.network.__class__.__name__,
                    "rule": name,
                    "seconds_wall_cpu": times,
                    "convscope_over_bare": ours_ratio,
                    "zennit_over_bare": zennit_ratio,
                    "flops_convscope_over_bare": flop_ratio,
                }
            )

            def cell(summary):
                return f"{summary['median']:.2f} ({summary['min']:.2f}-{summary['max']:.2f})"

            table.add_row(
                model.network.__class__.__name__,
                name,
                f"{sorted(t[0] for t in times['bare'])[len(times['bare']) // 2]:.3f}",
                cell(ours_ratio["wall"]),
                cell(ours_ratio["cpu"]),
                cell(zennit_ratio["wall"]),
                cell(zennit_ratio["cpu"]),
                f"{flop_ratio:.2f}",
            )
            print(name, model.network.__class__.__name__, ours_ratio, flush=True)
    Console().print(table)
    save_results("lrp", rows, batch=args.batch, size=args.size, repeats=args.repeats, device=args.device)


if __name__ == "__main__":
    main()
