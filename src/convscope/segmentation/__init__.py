"""Segmentation: upsampling blocks, fully-convolutional classifiers, FCN, U-Net, SegNet, data, training."""

from __future__ import annotations

from torch import nn

from ..errors import ConvscopeError
from ..models import load_model
from .blocks import (
    bilinear_kernel,
    bilinear_upsample,
    bilinear_upsample_transposed,
    max_pool_with_indices,
    max_unpool,
    stamp_transposed_conv,
)
from .convolutionalize import ClassMap, FullyConvolutional, class_heatmap, convolutionalize, linear_to_conv
from .data import (
    SCENE_CLASSES,
    VOC_CLASSES,
    SegmentationData,
    generate_scenes,
    load_voc_folder,
    voc_palette,
    write_voc_folder,
)
from .folder import FolderPart, MaskFolder, open_mask_folder
from .draw import draw_masks, prediction_figure
from .fcn import FCN, stride_layers
from .train import (
    SegmentationScores,
    TrainingHistory,
    confusion_matrix,
    dice_loss,
    evaluate_segmenter,
    predict_masks,
    segmentation_loss,
    train_segmenter,
)
from .segnet import SegNet
from .unet import UNet


def build_segmenter(arch: str, num_classes: int, backbone: str | nn.Module = "efficientnet_lite0") -> nn.Module:
    """``fcn32s`` / ``fcn16s`` / ``fcn8s`` on a pretrained ``backbone`` (frozen), or a small ``unet`` or
    ``segnet`` from scratch."""
    if arch == "unet":
        return UNet(num_classes)
    if arch == "segnet":
        return SegNet(num_classes)
    if arch in ("fcn32s", "fcn16s", "fcn8s"):
        return FCN(load_model(backbone) if isinstance(backbone, str) else backbone, num_classes, arch[3:])
    raise ConvscopeError(f"unknown segmentation architecture {arch!r}: choose fcn32s, fcn16s, fcn8s, unet or segnet")


__all__ = [
    "bilinear_kernel",
    "bilinear_upsample",
    "bilinear_upsample_transposed",
    "build_segmenter",
    "class_heatmap",
    "ClassMap",
    "confusion_matrix",
    "convolutionalize",
    "dice_loss",
    "draw_masks",
    "evaluate_segmenter",
    "FCN",
    "FolderPart",
    "FullyConvolutional",
    "generate_scenes",
    "linear_to_conv",
    "load_voc_folder",
    "MaskFolder",
    "max_pool_with_indices",
    "max_unpool",
    "open_mask_folder",
    "predict_masks",
    "prediction_figure",
    "SCENE_CLASSES",
    "segmentation_loss",
    "SegmentationData",
    "SegmentationScores",
    "SegNet",
    "stamp_transposed_conv",
    "stride_layers",
    "train_segmenter",
    "TrainingHistory",
    "UNet",
    "VOC_CLASSES",
    "voc_palette",
    "write_voc_folder",
]
