"""FCN-32s / 16s / 8s (Long, Shelhamer & Darrell 2015) on a pretrained classifier backbone.

The backbone (a copy of any convscope classifier) runs to its stride-32 features; a 1x1
convolution scores every location (FCN-32s). FCN-16s adds the scores of the stride-16
features to the 2x-upsampled stride-32 scores, FCN-8s adds stride-8 scores as well
("skip" connections that combine coarse semantics with fine appearance). As in the paper
the 2x upsamplings are transposed convolutions initialised to bilinear interpolation
(:func:`~convscope.segmentation.blocks.bilinear_kernel`) and learned, the skip score
layers start at zero (so training starts from the coarser net's output), and the last
upsampling to the input size is fixed bilinear interpolation.

Deviations: the backbone's features are read with :func:`convscope.hooks.capture` at
named layers (default: the last layer at each stride, found by running the model), not by
rebuilding the network; the paper's 100-pixel input padding and crop layers are replaced
by sizing each upsampled map to its skip map (crop, or edge-pad by one cell for odd sizes).
"""

from __future__ import annotations

__all__ = ["FCN", "stride_layers", "VARIANTS"]

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConvscopeError
from ..hooks import capture
from ..layers import layer_table
from ..models import ImageClassifier
from .blocks import bilinear_kernel

VARIANTS = {"32s": (32,), "16s": (32, 16), "8s": (32, 16, 8)}


def stride_layers(model: nn.Module, strides=(32, 16, 8), size: int = 224) -> dict[int, str]:
    """For each stride, the last stage output at ``size / stride`` (dotted names).

    A stage output is a module that is a child of an ``nn.Sequential`` or of the network
    itself (not an internal layer of a block such as an expansion conv), is not an
    adaptive pool, and is lifted to its outermost ancestor with the same output shape.
    """
    root = model.network if isinstance(model, ImageClassifier) else model
    modules = dict(root.named_modules())
    rows = [row for row in layer_table(model, size) if row.output_shape is not None and len(row.output_shape) == 3]
    shapes = {row.name: row.output_shape for row in rows}

    def stage_output(name: str) -> bool:
        parent = modules.get(name.rpartition(".")[0]) if "." in name else root
        return isinstance(parent, nn.Sequential) or parent is root

    chosen = {}
    for stride in strides:
        at_stride = [
            row.name
            for row in rows
            if row.output_shape[-1] == -(-size // stride)
            and stage_output(row.name)
            and not isinstance(modules.get(row.name), (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
        ]
        if not at_stride:
            raise ConvscopeError(f"{getattr(model, 'name', 'the model')} has no feature map at stride {stride}")
        name = at_stride[-1]
        parts = name.split(".")
        for cut in range(1, len(parts)):
            parent = ".".join(parts[:cut])
            if shapes.get(parent) == shapes[name]:
                name = parent
                break
        chosen[stride] = name
    return chosen


def _fit(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop (or edge-pad) ``x`` to the spatial size of ``like``."""
    x = x[..., : like.shape[-2], : like.shape[-1]]
    pad_h, pad_w = like.shape[-2] - x.shape[-2], like.shape[-1] - x.shape[-1]
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


class FCN(nn.Module):
    """FCN-32s/16s/8s: (N, 3, H, W) in [0, 1] -> (N, num_classes, H, W) pixel scores.

    Args:
        backbone: a classifier (e.g. the embedded EfficientNet-Lite0); it is copied.
        num_classes: segmentation classes (background included).
        variant: ``"32s"``, ``"16s"`` or ``"8s"``.
        layers: stride -> dotted layer name of the backbone; default :func:`stride_layers`.
        train_backbone: fine-tune the backbone too (default: frozen, in eval mode).

    >>> net = FCN(load_model(), num_classes=4, variant="8s")
    >>> net(torch.rand(2, 3, 96, 96)).shape
    torch.Size([2, 4, 96, 96])
    """

    def __init__(
        self,
        backbone: ImageClassifier,
        num_classes: int,
        variant: str = "8s",
        layers: dict[int, str] | None = None,
        train_backbone: bool = False,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ConvscopeError(f"unknown FCN variant {variant!r}: choose 32s, 16s or 8s")
        self.variant = variant
        self.num_classes = num_classes
        self.train_backbone = train_backbone
        self.backbone = copy.deepcopy(backbone)
        strides = VARIANTS[variant]
        self.layers = {int(k): v for k, v in (layers or stride_layers(self.backbone, strides)).items()}
        channels = {
            row.name: row.output_shape[0] for row in layer_table(self.backbone, 224) if row.name in self.layers.values()
        }
        self.score = nn.ModuleDict({str(s): nn.Conv2d(channels[self.layers[s]], num_classes, 1) for s in strides})
        self.upsample = nn.ModuleDict(
            {str(s): nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False) for s in strides[1:]}
        )
        with torch.no_grad():
            for stride in strides[1:]:
                self.score[str(stride)].weight.zero_()
                self.score[str(stride)].bias.zero_()
                self.upsample[str(stride)].weight.copy_(bilinear_kernel(num_classes, 2))
        self.backbone.requires_grad_(train_backbone)
        self.train(True)

    def train(self, mode: bool = True) -> FCN:
        super().train(mode)
        if not self.train_backbone:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        strides = VARIANTS[self.variant]
        with (
            capture(self.backbone, [self.layers[s] for s in strides]) as seen,
            torch.set_grad_enabled(torch.is_grad_enabled() and self.train_backbone),
        ):
            self.backbone(x)
        scores = self.score["32"](seen[self.layers[32]])
        for stride in strides[1:]:
            skip = self.score[str(stride)](seen[self.layers[stride]])
            scores = _fit(self.upsample[str(stride)](scores), skip) + skip
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
