"""convscope: see what a convolutional network has learned, why it predicts what it
predicts, and how it can be fooled, on your own PyTorch model."""

from .errors import ConvscopeError
from .hooks import capture, frozen
from .images import load_folder, load_image, load_images, model_image, save_image
from .layers import default_cam_layer, find_layer, layer_names, layer_table, receptive_field
from .models import ImageClassifier, ModelSpec, imagenet_labels, list_models, load_model, save_checkpoint, wrap_model

__version__ = "0.1.0"
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
