"""Layer names, output shapes and receptive fields (hand-computed for AlexNet and VGG16)."""

import warnings

import pytest
import torch

import convscope
from convscope import ConvscopeError
from convscope.layers import canonical_name, default_cam_layer, find_layer, layer_names, layer_table, receptive_field


def _field_rows(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convscope.load_model(spec)
    return model, {r.name: r for r in layer_table(model, 224)}


def test_alexnet_by_hand():
    # (size, jump, start) along conv1 k11 s4 p2, pool k3 s2, conv2 k5 p2, pool, conv3-5 k3 p1, pool
    expected = {
        "features.0": (11, 4, 3),
        "features.2": (19, 8, 7),
        "features.3": (51, 8, 7),
        "features.5": (67, 16, 15),
        "features.6": (99, 16, 15),
        "features.8": (131, 16, 15),
        "features.10": (163, 16, 15),
        "features.12": (195, 32, 31),
    }
    _, rows = _field_rows("torchvision:alexnet")
    for name, (size, jump, start) in expected.items():
        field = rows[name].receptive_field
        assert (field.size[0], field.jump[0], field.start[0]) == (size, jump, start), name
    assert rows["features.12"].output_shape == (256, 6, 6)
    assert rows["classifier.6"].receptive_field.size is None  # global


def test_vgg16_by_hand():
    # 3x3 convs add 2 * jump; 2x2 pools add jump, double it and move the start by jump / 2
    expected = {
        "features.0": (3, 1, 0),
        "features.4": (6, 2, 0.5),
        "features.9": (16, 4, 1.5),
        "features.16": (44, 8, 3.5),
        "features.23": (100, 16, 7.5),
        "features.28": (196, 16, 7.5),
        "features.30": (212, 32, 15.5),
    }
    _, rows = _field_rows("torchvision:vgg16")
    for name, (size, jump, start) in expected.items():
        field = rows[name].receptive_field
        assert (field.size[0], field.jump[0], field.start[0]) == (size, jump, start), name


def test_receptive_field_contains_the_gradient_support(model):
    """Empirical check on the embedded (branched, 'same'-padded) model: the input pixels a unit
    depends on lie inside its computed field, and reach its edges."""
    field = receptive_field(model, "blocks.1", size=64)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    with convscope.frozen(model), convscope.capture(model, "blocks.1") as seen:
        model(x)
        seen["blocks.1"][0, :, 5, 6].sum().backward()
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    top, left, bottom, right = field.box(5, 6)
    assert top <= rows.min() and rows.max() < bottom and left <= cols.min() and cols.max() < right
    assert rows.max() - rows.min() + 1 == bottom - top and cols.max() - cols.min() + 1 == right - left


def test_embedded_layer_map(model):
    rows = {r.name: r for r in layer_table(model)}
    assert rows["bn2"].output_shape == (1280, 7, 7)
    assert rows["conv_stem"].receptive_field.size == (3, 3) and rows["conv_stem"].receptive_field.jump == (2, 2)
    assert rows["blocks.6"].receptive_field.jump == (32, 32)
    assert default_cam_layer(model) == "bn2"


def test_names(model):
    names = layer_names(model)
    assert "blocks.3.0.conv_pw" in names and "" not in names
    assert find_layer(model, "network.bn2") is find_layer(model, "bn2")
    assert canonical_name(model, "network.bn2") == "bn2"


def test_unknown_layer_suggests_the_closest(model):
    with pytest.raises(ConvscopeError, match="closest: blocks.6"):
        find_layer(model, "blocks.66")


def test_default_cam_layers_of_torchvision_models():
    for spec, layer in [
        ("torchvision:alexnet", "features.11"),
        ("torchvision:vgg16", "features.29"),
        ("torchvision:resnet18", "layer4.1"),
        ("torchvision:googlenet", "inception5b"),
    ]:
        model, _ = _field_rows(spec)
        assert default_cam_layer(model) == layer


def test_the_table_says_why_a_layer_cannot_be_used_for_spatial_methods(model, monkeypatch, capsys):
    """One reason per unusable layer (LayerInfo.unusable), the same in the CLI's table and /api/layers;
    every layer without one gives a Grad-CAM map."""
    from helpers import run_cli

    rows = {r.name: r for r in layer_table(model, 64)}
    assert rows["blocks.0.0.drop_path"].unusable == "never runs in the forward pass"
    assert rows["classifier"].unusable == "no spatial map (output 1000)"
    assert rows["global_pool"].unusable.startswith("no spatial map")
    assert rows["bn2"].unusable is None and rows["bn2"].cells()[-1] == ""
    usable = [name for name, row in rows.items() if row.unusable is None]
    assert 0 < len(usable) < len(rows)
    x = torch.rand(1, 3, 64, 64)
    for name in usable[::25] + usable[-1:]:
        assert convscope.attribute(model, x, 0, method="gradcam", layer=name).shape == (1, 1, 64, 64), name
    code, out, _ = run_cli(monkeypatch, capsys, "layers", "--size", "64", "--match", "blocks.0.0.drop_path")
    assert code == 0 and "never runs in the" in out and "unusable for" in out


def _cifar_net():
    """A 32x32 CIFAR-style net (flatten + linear head: it only takes 32x32)."""
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
    )  # fmt: skip


@pytest.mark.parametrize("size", [32, 64, 160, 48])
def test_fixed_size_fields_are_the_gradient_support(size):
    """On a fixed-size model images of any size are resized to 32 inside ``forward`` (antialiased
    bilinear): a unit's box (what dissect crops its examples to) is the bounding box of the pixels
    whose gradient is not zero, over 16 random images (ReLU and max-pool zero some paths on any one
    image), exactly for whole-number ratios (64 and 160 to 32), within a pixel for 48 to 32. The
    normalization (mean 0.5, std 0.05) makes the noise, not the biases and the zero padding, decide
    which max-pool input wins: the resize averages 25 pixels at 160 px, and with std 1 the row next
    to the padding then won every time, so the gradient never reached a part of the field."""
    model = convscope.load_model(_cifar_net(), input_size=32, mean=(0.5,) * 3, std=(0.05,) * 3)
    x = torch.rand(16, 3, size, size, requires_grad=True)
    tolerance = 0 if size % 32 == 0 else 1
    for layer in ("0", "3", "4", "7"):
        field = receptive_field(model, layer, size)
        with convscope.frozen(model), convscope.capture(model, layer) as seen:
            model(x)
        units = seen[layer].shape[-1]
        for y, x_ in ((0, 0), (units // 2, units // 3), (units - 1, units // 2)):
            (gradient,) = torch.autograd.grad(seen[layer][:, :, y, x_].sum(), x, retain_graph=True)
            rows, cols = torch.nonzero(gradient.abs().sum((0, 1)), as_tuple=True)
            support = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
            box = field.box(y, x_, (size, size))
            assert max(abs(a - b) for a, b in zip(box, support)) <= tolerance, (layer, y, x_, box, support)


def test_layers_chosen_by_depth(model):
    """The tour, the report and dream/invert/weights pick layers by relative depth (the share of the
    convolutions run before a stage's output): on the embedded model exactly the names they used
    before (so its outputs do not change), on a ResNet-18 its stages."""
    import torchvision

    from convscope.commands.dissect import EARLY_DEPTH, UNITS_DEPTH
    from convscope.commands.synthesis import DREAM_DEPTH, INVERT_DEPTH, SWEEP_DEPTHS, VISUALIZE_DEPTH
    from convscope.layers import first_convolution, layers_at_depths
    from convscope.optimize.report_sections import DREAM_DEPTH as REPORT_DREAM_DEPTH

    depths = (*SWEEP_DEPTHS, VISUALIZE_DEPTH, DREAM_DEPTH, INVERT_DEPTH, EARLY_DEPTH, UNITS_DEPTH, REPORT_DREAM_DEPTH)
    expected = {
        "efficientnet_lite0": (
            ("bn1", "blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "bn2"),
            ("blocks.4", "blocks.3", "blocks.2", "bn1", "blocks.3", "blocks.4"),
            "conv_stem",
        ),
        "resnet18": (
            ("maxpool", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer4.0", "layer4.1"),
            ("layer3.0", "layer2.1", "layer2.0", "maxpool", "layer2.1", "layer3.0"),
            "conv1",
        ),
    }
    for name, network in (("efficientnet_lite0", model), ("resnet18", torchvision.models.resnet18().eval())):
        chosen = [row.name for row in layers_at_depths(network, depths)]
        sweep, tour, first = expected[name]
        assert tuple(chosen[: len(SWEEP_DEPTHS)]) == sweep and tuple(chosen[len(SWEEP_DEPTHS) :]) == tour, name
        assert first_convolution(network) == first
