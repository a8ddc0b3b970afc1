"""convscope: see what a convolutional network has learned, why it predicts what it
predicts, and how it can be fooled, on your own PyTorch model."""

from importlib import metadata as _metadata

from .errors import ConvscopeError
from .hooks import capture, frozen
from .images import load_folder, load_image, load_images, model_image, save_image
from .layers import default_cam_layer, find_layer, layer_names, layer_table, receptive_field
from .models import ImageClassifier, ModelSpec, imagenet_labels, list_models, load_model, save_checkpoint, wrap_model

try:  # the one version string: pyproject.toml's, read from the installed metadata
    __version__ = _metadata.version("convscope")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
from .attacks import ATTACKS, AttackResult, attack, list_attacks
from .robustness.corruptions import CORRUPTIONS, corrupt
from .dissect import sample_folder, top_k_examples, top_units, weight_grid, weight_tiles
from .dissect.atlas import build_atlas
from .attribution import METHODS as ATTRIBUTION_METHODS, attribute
from .optimize import (dream, invert, invert_embedding, invert_sweep, stylize, visualize_channel,
                       visualize_class)
from .report import build_report, write_report
from .segmentation import (FCN, UNet, class_heatmap, convolutionalize, evaluate_segmenter, generate_scenes,
                           load_voc_folder, predict_masks, train_segmenter)
from .transfer import finetune, load_image_folder, photo_dataset
from .robustness.shape_bias import CATEGORIES as SHAPE_BIAS_CATEGORIES, make_cue_conflict, shape_bias

__all__ = ["model_image", "ModelSpec", "save_checkpoint", "__version__", "attack", "AttackResult", "ATTACKS", "attribute", "ATTRIBUTION_METHODS", "build_atlas",
           "build_report", "capture", "class_heatmap", "convolutionalize", "ConvscopeError", "corrupt",
           "CORRUPTIONS", "default_cam_layer", "dream", "evaluate_segmenter", "FCN", "find_layer", "finetune",
           "frozen", "generate_scenes", "ImageClassifier", "imagenet_labels", "invert", "invert_embedding",
           "invert_sweep", "layer_names", "layer_table", "list_attacks", "list_models", "load_folder", "load_image",
           "load_image_folder", "load_images", "load_model", "load_voc_folder", "make_cue_conflict", "photo_dataset",
           "predict_masks", "receptive_field", "sample_folder", "save_image", "shape_bias", "SHAPE_BIAS_CATEGORIES",
           "stylize", "top_k_examples", "top_units", "train_segmenter", "UNet", "visualize_channel",
           "visualize_class", "weight_grid", "weight_tiles", "wrap_model", "write_report"]
