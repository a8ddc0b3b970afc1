"""Optimizing the input of a frozen network: feature visualization, DeepDream, feature
inversion, embedding inversion and style transfer — four configurations of one loop
(:func:`~convscope.optimize.loop.optimize`) over composable objectives, image
parameterizations, random transforms and image priors."""

from .dream import Dream, dream
from .invert import Inversion, invert, invert_embedding, invert_sweep, representation
from .loop import OptimizationResult, evaluate, optimize
from .objectives import (
    Evaluation,
    Objective,
    channel,
    class_logit,
    diversity,
    direction,
    embedding,
    gram,
    gram_matrix,
    layer_energy,
    match_activations,
    neuron,
)
from .params import ImageParam, image_param
from .regularizers import alpha_norm, blur_every, clip_small_contribution, clip_small_norm, total_variation
from .style import StyleResult, stylize
from .transforms import STANDARD, jitter, pad, random_rotate, random_scale, roll
from .visualize import Visualization, photo_scores, render, robust_scores, visualize_channel, visualize_class

__all__ = [
    "alpha_norm",
    "blur_every",
    "channel",
    "class_logit",
    "clip_small_contribution",
    "clip_small_norm",
    "direction",
    "diversity",
    "Dream",
    "dream",
    "embedding",
    "evaluate",
    "Evaluation",
    "gram",
    "gram_matrix",
    "image_param",
    "ImageParam",
    "Inversion",
    "invert",
    "invert_embedding",
    "invert_sweep",
    "jitter",
    "layer_energy",
    "match_activations",
    "neuron",
    "Objective",
    "OptimizationResult",
    "optimize",
    "pad",
    "photo_scores",
    "random_rotate",
    "random_scale",
    "render",
    "representation",
    "robust_scores",
    "roll",
    "STANDARD",
    "StyleResult",
    "stylize",
    "total_variation",
    "Visualization",
    "visualize_channel",
    "visualize_class",
]
