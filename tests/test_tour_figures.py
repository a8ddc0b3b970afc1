"""The tour's figures: titled with the model, what they show and the number that matters, at 300 dpi."""

import torch
from PIL import Image

from convscope.images import load_image
from convscope.predictions import predict
from helpers import png_dpi, png_title


def test_attribution_step_explains_the_top_class(model, tmp_path):
    from convscope.commands.explain import attribution_step

    photo = load_image("sample:coffee", 96)  # a photo whose top class is not a cat: nothing hard-coded
    top = predict(model, photo, 1)[0][0]
    (path,) = attribution_step(model, photo, tmp_path)
    assert png_title(path) == f"efficientnet_lite0: {top.label} p = {top.probability:.3f}"
    assert png_dpi(path) == (300, 300)


def test_corruption_grid_names_the_model_prediction_on_each(model, tmp_path):
    from convscope.commands.robustness import corruptions_step

    photo = load_image("sample:chelsea", 64)
    (path,) = corruptions_step(model, photo, tmp_path)
    title = png_title(path)
    assert title.startswith("efficientnet_lite0, ImageNet-C corruptions, severity 3: top-1 changed by ")
    assert title.endswith(" of 19") and png_dpi(path) == (300, 300)
    with Image.open(path) as printed:  # 5 columns of 2.2 inches at 300 dpi
        assert printed.width == 5 * 2.2 * 300


def test_filter_grid_has_a_title_band_and_filter_ids(model):
    from convscope.dissect import weight_grid, weight_tiles

    tiles = weight_tiles(model, "conv_stem")
    plain = weight_grid(tiles, tile_side=72)
    titled = weight_grid(tiles, tile_side=72, numbered=True, title="efficientnet_lite0 · conv_stem")
    # 32 filters of 3x3 enlarged to 72 px, 7 columns: a 26 px title band and a 14 px id row under each tile
    assert len(tiles) == 32 and titled.size == (7 * 76, 26 + 5 * (72 + 14 + 4))
    band = torch.tensor(list(titled.crop((0, 0, titled.width, 26)).convert("L").getdata()))
    assert (band < 100).sum() > 50 and plain.height < titled.height  # the title is drawn in the band
