"""Inside the network: weights as pictures, dataset examples at the receptive field, a neuron atlas.

- :mod:`.weights`: conv filters / linear rows as image tiles.
- :mod:`.examples`: streaming top-k mining (Zeiler & Fergus 2014) with receptive-field patches,
  and the reverse view (which units fire most on one image): its records (``types``), where the
  images come from (``sources``), the pass (``mining``), saving and resuming (``resume``) and the
  pictures (``drawing``).
- :mod:`.engines`: where mining runs, ``local`` or ``ray`` (the Ray actor pool kept for the process).
- :mod:`.atlas`: a static HTML neuron atlas (OpenAI Microscope-like).
- :mod:`.projection`: a unit projected back to pixels (deconvnet / guided backprop).
- :mod:`.samples`: an offline image folder from the bundled photos.
"""

from . import engines  # noqa: F401  (registers the local and ray engines)
from .atlas import build_atlas
from .examples import (
    LayerExamples,
    TopExamples,
    UnitActivation,
    channel_sheet,
    example_strip,
    load_examples,
    top_k_examples,
    top_units,
)
from .projection import project_units
from .samples import sample_folder
from .weights import filter_tiles, layer_weight, row_tiles, weight_grid, weight_tiles

__all__ = [
    "LayerExamples",
    "TopExamples",
    "UnitActivation",
    "build_atlas",
    "channel_sheet",
    "example_strip",
    "filter_tiles",
    "layer_weight",
    "load_examples",
    "project_units",
    "row_tiles",
    "sample_folder",
    "top_k_examples",
    "top_units",
    "weight_grid",
    "weight_tiles",
]
