"""Fooling images (Nguyen 2015): unrecognisable images the model labels with >= 99 % confidence."""

import torch

from convscope.attacks.evolution import fooling_gallery, fooling_images
from convscope.testing import assert_untouched, model_state


def test_cppn_evolves_a_strawberry_at_99_percent(model, tmp_path):
    from helpers import png_dpi, svg_text

    before = model_state(model)
    result = fooling_images(model, [949], generations=40, generator=torch.Generator().manual_seed(0))
    assert_untouched(model, before)
    with torch.no_grad():
        again = model(result.images).softmax(dim=1)[0, 949]
    # seeds 0-4 x threads 1/2/4: stops at 0.992-0.999 after 3-7 generations (it stops once >= 0.99)
    assert result.confidence.item() >= 0.99 and abs(again.item() - result.confidence.item()) < 1e-4
    assert result.queries.item() == 32 * result.generations.item() and result.generations.item() < 40
    assert result.images.shape == (1, 3, 64, 64) and result.images.std() > 0.01  # not a flat colour
    assert fooling_gallery(model, result).size[0] > 0
    fooling_gallery(model, result, tmp_path / "gallery.svg")
    generations = result.generations.item()
    heading = f"efficientnet_lite0: fooling images (CPPN evolution, Nguyen 2015), {generations} generations, "
    assert heading + f"{32 * generations} queries per class" in svg_text(
        tmp_path / "gallery.svg"
    ) and f"strawberry (949) p = {result.confidence.item():.3f}" in svg_text(tmp_path / "gallery.svg")
    fooling_gallery(model, result, tmp_path / "gallery.png")
    assert png_dpi(tmp_path / "gallery.png") == (300, 300)


def test_direct_encoding_never_loses_its_best_and_stops_finished_classes(model, tmp_path):
    from helpers import svg_text

    result = fooling_images(
        model,
        [949, 980],
        encoding="direct",
        size=32,
        popsize=8,
        elite=2,
        generations=6,
        generator=torch.Generator().manual_seed(0),
    )
    assert (result.history[1:] >= result.history[:-1] - 1e-6).all()  # elitism
    assert ((result.images >= 0) & (result.images <= 1)).all()
    assert torch.equal(result.queries, result.generations * 8)
    fooling_gallery(model, result, tmp_path / "direct.svg")  # the title names the encoding that ran
    assert "(direct-pixel evolution, Nguyen 2015)" in svg_text(tmp_path / "direct.svg")
