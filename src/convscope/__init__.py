"""convscope: see what a convolutional network has learned, why it predicts what it
predicts, and how it can be fooled, on your own PyTorch model.

The names below load on first use (PEP 562), so ``import convscope`` and ``convscope --help``
do not import torch until a function is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

try:  # the one version string: pyproject.toml's, read from the installed metadata
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("convscope")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: public name -> (module, attribute)
_EXPORTS = {
    "ConvscopeError": (".errors", "ConvscopeError"),
    "capture": (".hooks", "capture"),
    "frozen": (".hooks", "frozen"),
    "load_folder": (".images", "load_folder"),
    "load_image": (".images", "load_image"),
    "load_images": (".images", "load_images"),
    "model_image": (".images", "model_image"),
    "save_image": (".images", "save_image"),
    "default_cam_layer": (".layers", "default_cam_layer"),
    "find_layer": (".layers", "find_layer"),
    "layer_names": (".layers", "layer_names"),
    "layer_table": (".layers", "layer_table"),
    "receptive_field": (".layers", "receptive_field"),
    "ImageClassifier": (".models", "ImageClassifier"),
    "ModelSpec": (".models", "ModelSpec"),
    "imagenet_labels": (".models", "imagenet_labels"),
    "list_models": (".models", "list_models"),
    "load_model": (".models", "load_model"),
    "save_checkpoint": (".models", "save_checkpoint"),
    "wrap_model": (".models", "wrap_model"),
    "ATTACKS": (".attacks", "ATTACKS"),
    "AttackResult": (".attacks", "AttackResult"),
    "attack": (".attacks", "attack"),
    "list_attacks": (".attacks", "list_attacks"),
    "CORRUPTIONS": (".robustness.corruptions", "CORRUPTIONS"),
    "corrupt": (".robustness.corruptions", "corrupt"),
    "sample_folder": (".dissect", "sample_folder"),
    "top_k_examples": (".dissect", "top_k_examples"),
    "top_units": (".dissect", "top_units"),
    "weight_grid": (".dissect", "weight_grid"),
    "weight_tiles": (".dissect", "weight_tiles"),
    "build_atlas": (".dissect.atlas", "build_atlas"),
    "ATTRIBUTION_METHODS": (".attribution", "METHODS"),
    "attribute": (".attribution", "attribute"),
    "dream": (".optimize", "dream"),
    "invert": (".optimize", "invert"),
    "invert_embedding": (".optimize", "invert_embedding"),
    "invert_sweep": (".optimize", "invert_sweep"),
    "stylize": (".optimize", "stylize"),
    "visualize_channel": (".optimize", "visualize_channel"),
    "visualize_class": (".optimize", "visualize_class"),
    "build_report": (".report", "build_report"),
    "write_report": (".report", "write_report"),
    "FCN": (".segmentation", "FCN"),
    "UNet": (".segmentation", "UNet"),
    "class_heatmap": (".segmentation", "class_heatmap"),
    "convolutionalize": (".segmentation", "convolutionalize"),
    "evaluate_segmenter": (".segmentation", "evaluate_segmenter"),
    "generate_scenes": (".segmentation", "generate_scenes"),
    "load_voc_folder": (".segmentation", "load_voc_folder"),
    "predict_masks": (".segmentation", "predict_masks"),
    "train_segmenter": (".segmentation", "train_segmenter"),
    "finetune": (".transfer", "finetune"),
    "load_image_folder": (".transfer", "load_image_folder"),
    "photo_dataset": (".transfer", "photo_dataset"),
    "SHAPE_BIAS_CATEGORIES": (".robustness.shape_bias", "CATEGORIES"),
    "make_cue_conflict": (".robustness.shape_bias", "make_cue_conflict"),
    "shape_bias": (".robustness.shape_bias", "shape_bias"),
}

if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from .errors import ConvscopeError  # noqa: F401
    from .hooks import capture  # noqa: F401
    from .hooks import frozen  # noqa: F401
    from .images import load_folder  # noqa: F401
    from .images import load_image  # noqa: F401
    from .images import load_images  # noqa: F401
    from .images import model_image  # noqa: F401
    from .images import save_image  # noqa: F401
    from .layers import default_cam_layer  # noqa: F401
    from .layers import find_layer  # noqa: F401
    from .layers import layer_names  # noqa: F401
    from .layers import layer_table  # noqa: F401
    from .layers import receptive_field  # noqa: F401
    from .models import ImageClassifier  # noqa: F401
    from .models import ModelSpec  # noqa: F401
    from .models import imagenet_labels  # noqa: F401
    from .models import list_models  # noqa: F401
    from .models import load_model  # noqa: F401
    from .models import save_checkpoint  # noqa: F401
    from .models import wrap_model  # noqa: F401
    from .attacks import ATTACKS  # noqa: F401
    from .attacks import AttackResult  # noqa: F401
    from .attacks import attack  # noqa: F401
    from .attacks import list_attacks  # noqa: F401
    from .robustness.corruptions import CORRUPTIONS  # noqa: F401
    from .robustness.corruptions import corrupt  # noqa: F401
    from .dissect import sample_folder  # noqa: F401
    from .dissect import top_k_examples  # noqa: F401
    from .dissect import top_units  # noqa: F401
    from .dissect import weight_grid  # noqa: F401
    from .dissect import weight_tiles  # noqa: F401
    from .dissect.atlas import build_atlas  # noqa: F401
    from .attribution import METHODS as ATTRIBUTION_METHODS  # noqa: F401
    from .attribution import attribute  # noqa: F401
    from .optimize import dream  # noqa: F401
    from .optimize import invert  # noqa: F401
    from .optimize import invert_embedding  # noqa: F401
    from .optimize import invert_sweep  # noqa: F401
    from .optimize import stylize  # noqa: F401
    from .optimize import visualize_channel  # noqa: F401
    from .optimize import visualize_class  # noqa: F401
    from .report import build_report  # noqa: F401
    from .report import write_report  # noqa: F401
    from .segmentation import FCN  # noqa: F401
    from .segmentation import UNet  # noqa: F401
    from .segmentation import class_heatmap  # noqa: F401
    from .segmentation import convolutionalize  # noqa: F401
    from .segmentation import evaluate_segmenter  # noqa: F401
    from .segmentation import generate_scenes  # noqa: F401
    from .segmentation import load_voc_folder  # noqa: F401
    from .segmentation import predict_masks  # noqa: F401
    from .segmentation import train_segmenter  # noqa: F401
    from .transfer import finetune  # noqa: F401
    from .transfer import load_image_folder  # noqa: F401
    from .transfer import photo_dataset  # noqa: F401
    from .robustness.shape_bias import CATEGORIES as SHAPE_BIAS_CATEGORIES  # noqa: F401
    from .robustness.shape_bias import make_cue_conflict  # noqa: F401
    from .robustness.shape_bias import shape_bias  # noqa: F401


def __getattr__(name: str):
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'convscope' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "__version__",
    "ModelSpec",
    "model_image",
    "save_checkpoint",
    "attack",
    "AttackResult",
    "ATTACKS",
    "attribute",
    "ATTRIBUTION_METHODS",
    "build_atlas",
    "build_report",
    "capture",
    "class_heatmap",
    "convolutionalize",
    "ConvscopeError",
    "corrupt",
    "CORRUPTIONS",
    "default_cam_layer",
    "dream",
    "evaluate_segmenter",
    "FCN",
    "find_layer",
    "finetune",
    "frozen",
    "generate_scenes",
    "ImageClassifier",
    "imagenet_labels",
    "invert",
    "invert_embedding",
    "invert_sweep",
    "layer_names",
    "layer_table",
    "list_attacks",
    "list_models",
    "load_folder",
    "load_image",
    "load_image_folder",
    "load_images",
    "load_model",
    "load_voc_folder",
    "make_cue_conflict",
    "photo_dataset",
    "predict_masks",
    "receptive_field",
    "sample_folder",
    "save_image",
    "shape_bias",
    "SHAPE_BIAS_CATEGORIES",
    "stylize",
    "top_k_examples",
    "top_units",
    "train_segmenter",
    "UNet",
    "visualize_channel",
    "visualize_class",
    "weight_grid",
    "weight_tiles",
    "wrap_model",
    "write_report",
]
