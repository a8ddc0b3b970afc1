"""The four features on the real embedded model and bundled photos, at small sizes.

The full-size success numbers (three layers vs every photo, p > 0.9 for a class, inversion
error per layer, style loss drop) come from ``benchmarks/synthesis.py --quality``; these tests
assert the same criteria at a scale that runs in seconds."""

import pytest
import torch
import torch.nn.functional as F

import convscope
from convscope.errors import ConvscopeError
from convscope.optimize import (
    channel,
    embedding,
    dream,
    evaluate,
    invert,
    invert_embedding,
    layer_energy,
    photo_scores,
    render,
    representation,
    robust_scores,
    stylize,
    visualize_channel,
    visualize_class,
)
from convscope.optimize.style import default_style_layers, vgg_layer_names
from convscope.predictions import predict
from convscope.testing import assert_untouched, model_state


@pytest.mark.parametrize("layer, index", [("blocks.2", 5), ("blocks.3", 9), ("blocks.5", 20)])
def test_visualization_beats_every_photo_and_plain_pixel_ascent(model, layer, index):
    objective = channel(layer, index)
    best_photo = max(photo_scores(model, objective, 64).values())
    shown = render(model, objective, size=64, steps=40, progress=False)
    plain = render(
        model, objective, size=64, steps=40, param="pixel", decorrelate=False, transforms=None, progress=False
    )
    # seeds 0-2 x threads 1/2/4, score / best photo: blocks.2 2.59-2.79, blocks.3 1.59-1.91, blocks.5 1.46-2.60
    assert float(shown.scores[0]) > best_photo  # measured 22.9 / 27.1 / 34.6 vs 8.9 / 14.6 / 17.3
    assert shown.history[-1] > shown.history[0]
    # plain ascent's raw score is higher, but its high-frequency pattern does not survive small
    # jitter/scale/rotation; the Fourier + transforms image keeps more under random views
    # (measured 14.6 / 20.4 / 31.3 vs 7.2 / 12.7 / 7.2; the difference over seeds 0-2 x threads
    # 1/2/4: blocks.2 7.2-8.8, blocks.3 6.6-7.5, blocks.5 14.7-24.1)
    assert float(robust_scores(model, objective, shown.image)[0]) > float(
        robust_scores(model, objective, plain.image)[0]
    )


def test_channel_grid_renders_one_image_per_channel(model):
    shown = visualize_channel(model, "blocks.2", [0, 1, 2], size=48, steps=12, progress=False)
    assert shown.image.shape == (3, 3, 48, 48) and 0 <= shown.image.min() and shown.image.max() <= 1
    alone = evaluate(model, channel("blocks.2", 0), shown.image)
    # each image excites its own channel most among the three rendered (own score minus the best
    # other, seeds 0-4 x threads 1/2/4: 5.5-7.9)
    scores = torch.stack([evaluate(model, channel("blocks.2", c), shown.image) for c in range(3)])
    assert (scores.argmax(dim=0) == torch.arange(3)).all() and alone[0] == scores[0, 0]
    assert shown._repr_png_()[:4] == b"\x89PNG"


def test_class_visualization_is_classified_as_the_class(model):
    # Measured spread (2026-12-01), p(espresso) as top-1 after 40 steps at 96 px:
    #   seed 0 (this test): 0.9999 at 1 thread, 0.886 at 2, 0.940 at 4;
    #   seeds 0-6: 1 thread min 0.64, 2 threads min 0.52 (issue 13), 4 threads top-1 in 6 of 7
    #   (seed 4: espresso second to beer glass, p(top) 0.69).
    # What the method guarantees at a fixed seed on any thread count: the class wins top-1 and
    # clearly (p > 0.5, a margin of 0.39 below the lowest seed-0 value).
    shown = visualize_class(model, "espresso", size=96, steps=40, progress=False, seed=0)
    top = predict(model, shown.image, 1)[0][0]
    assert top.class_id == 967 and top.probability > 0.5


def test_inversion_error_is_small_at_a_shallow_layer_and_grows_with_depth(model, chelsea):
    photo = F.interpolate(chelsea, size=64, mode="bilinear", antialias=True).clamp(0, 1)
    shallow = invert(model, photo, "blocks.1", steps=60, progress=False)
    assert float(shallow.relative_error[0]) < 0.1  # seeds 0-4 x threads 1/2/4: 0.073-0.080
    # the reconstruction looks like the photo: pixel correlation well above chance (0.675-0.723)
    correlation = torch.corrcoef(torch.stack([shallow.image.flatten(), photo.flatten()]))[0, 1]
    assert correlation > 0.6


def test_inversion_tv_weight_grows_with_the_layer_stride_as_in_the_paper(model):
    from convscope.optimize.invert import depth_scaled_tv

    # strides 2, 16 and 32 input pixels; a global layer's unit spans the whole 128-px image
    assert [depth_scaled_tv(model, layer, (128, 128), 0.5) for layer in ("bn1", "blocks.3", "bn2", "global_pool")] == [
        0.5,
        2.0,
        4.0,
        16.0,
    ]


def test_embedding_inversion_points_the_penultimate_features_at_the_target(model, coffee, chelsea):
    goal = representation(model, coffee, "global_pool")[0]
    shown = invert_embedding(model, goal, layer="global_pool", size=64, steps=30, transforms=None, progress=False)
    start = invert_embedding(model, goal, layer="global_pool", size=64, steps=1, transforms=None, progress=False)
    other_photo = float(evaluate(model, embedding(goal, "global_pool"), chelsea)[0])
    # closer to coffee's embedding than the noise start and than another photo's embedding
    # (the margin over seeds 0-4 x threads 1/2/4: 0.34-0.68)
    assert float(shown.scores[0]) > max(other_photo, float(start.scores[0])) + 0.1


def test_style_transfer_cuts_the_style_loss_by_90_percent_and_keeps_the_content(model):
    content, brick = (
        convscope.load_image("sample:chelsea", 96, "squash"),
        convscope.load_image("sample:brick", 96, "squash"),
    )
    result = stylize(model, content, brick, progress=False)  # the defaults: 150 Adam steps
    assert result.initial_content_loss == pytest.approx(0.0, abs=1e-6)
    # final / initial style loss at threads 1/2/4: 0.048-0.050 (the start is the content photo: the seed
    # changes nothing)
    assert float(result.final_style_loss[0]) <= 0.1 * result.initial_style_loss  # measured −95 %
    assert result.style_loss[-1] < result.style_loss[0]
    # the content stays near its start: a relative error of 0.32 measured (0.323-0.328 at threads 1/2/4), a third
    # of the brick photo's own distance from the cat (1.21) at the content layer
    from convscope.optimize.objectives import match_activations

    content_term = match_activations(result.content_layer, representation(model, content, result.content_layer))
    assert float(result.final_content_loss[0]) < 0.4
    assert float(result.final_content_loss[0]) < float(evaluate(model, content_term, brick)[0]) / 3


def test_deepdream_raises_the_energy_and_keeps_the_photo(model, small_batch):
    photo = small_batch[:1]
    dreamed = dream(model, photo, "blocks.3", octaves=2, steps=4, progress=False)
    energy = layer_energy("blocks.3")
    # energy ratio over seeds 0-4 x threads 1/2/4: 1.53-1.62; mean change 0.028
    assert float(evaluate(model, energy, dreamed.image)[0]) > 1.2 * float(evaluate(model, energy, photo)[0])
    assert dreamed.image.shape == photo.shape and len(dreamed.histories) == 2
    assert (dreamed.image - photo).abs().mean() < 0.1


def test_features_leave_the_model_untouched(model, small_batch):
    model.train()
    before = model_state(model)
    try:
        tiny = small_batch[:1, :, :48, :48].contiguous()
        render(model, channel("blocks.2", 0), size=32, steps=2, progress=False)
        dream(model, tiny, "blocks.2", octaves=1, steps=2, progress=False)
        invert(model, tiny, "blocks.1", steps=2, progress=False)
        stylize(model, tiny, tiny, steps=2, progress=False)
        with pytest.raises(ConvscopeError, match="unknown layer"):
            invert(model, tiny, "blocks.99", steps=2, progress=False)
        assert_untouched(model, before)
    finally:
        model.eval()


def test_style_defaults_use_vgg_names_on_a_vgg_and_tested_layers_on_efficientnet(model):
    from torchvision.models.vgg import cfgs, make_layers

    vgg = torch.nn.Module()
    vgg.features = make_layers(cfgs["E"])  # VGG19's convolutional part
    names = vgg_layer_names(vgg)
    assert names["conv1_1"] == "features.1" and names["conv4_2"] == "features.22" and names["conv5_1"] == "features.29"
    content, style = default_style_layers(vgg)
    assert content == "features.22" and style == [
        "features.1",
        "features.6",
        "features.11",
        "features.20",
        "features.29",
    ]
    assert default_style_layers(model) == (
        "blocks.5",
        ["bn1", "blocks.1.0.bn1", "blocks.2.0.bn1", "blocks.3.0.bn1", "blocks.4.0.bn1"],
    )
