"""Dataset examples: the images (and receptive-field patches) that excite a unit most.

Zeiler & Fergus (2014, "Visualizing and understanding convolutional networks") show, for
each feature map, the top-9 images of a dataset by the map's strongest activation, each
with the image patch under that activation's receptive field. Here one streaming pass over
a folder (or a list of images, a tensor or a ``torch`` dataset) records, for every channel
of one or more layers at once, the top-k images by the channel's spatial maximum and the
position (y, x) of that maximum. Memory is O(k x channels): only the running top-k lists
(values, image indices, positions) and a few per-channel sums are kept.

Conventions: an image appears at most once per channel (its strongest position), as in
Zeiler & Fergus; ties are broken by the lower image index, so the result does not depend
on batching or sharding (the Ray engine merges shards to exactly the same lists). Patches
are the receptive-field box from :func:`convscope.layers.receptive_field`, clipped to the
image. Layers with a (N, C) output (pooling, linear) count as 1 x 1 maps whose field is the
whole image.
"""

from .types import LayerExamples, TopExamples, UnitActivation
from .sources import ImageSource
from .resume import load_examples, state_bytes, state_from_bytes
from .mining import empty_result, mine_range, top_k_examples, top_units
from .drawing import channel_sheet, draw_box, example_strip

__all__ = [
    "channel_sheet",
    "draw_box",
    "empty_result",
    "example_strip",
    "ImageSource",
    "LayerExamples",
    "load_examples",
    "mine_range",
    "state_bytes",
    "state_from_bytes",
    "top_k_examples",
    "top_units",
    "TopExamples",
    "UnitActivation",
]
