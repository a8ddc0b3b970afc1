"""Upsampling blocks checked by hand and against PyTorch; the FC-head -> convolution identity."""

import warnings

import pytest
import torch
import torch.nn.functional as F

import convscope
from convscope.errors import ConvscopeError
from convscope.models import RandomWeightsWarning
from convscope.segmentation import (
    bilinear_kernel,
    bilinear_upsample,
    bilinear_upsample_transposed,
    class_heatmap,
    convolutionalize,
    linear_to_conv,
    max_pool_with_indices,
    max_unpool,
    stamp_transposed_conv,
)
from convscope.testing import assert_untouched, model_state


def test_stamp_worked_example_by_hand():
    # 2x2 input, 3x3 kernel of ones, stride 2: stamps at (0,0), (0,2), (2,0), (2,2) overlap on row/col 2.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = stamp_transposed_conv(x, torch.ones(1, 1, 3, 3), stride=2)[0, 0]
    expected = torch.tensor(
        [[1, 1, 3, 2, 2], [1, 1, 3, 2, 2], [4, 4, 10, 6, 6], [3, 3, 7, 4, 4], [3, 3, 7, 4, 4]], dtype=torch.float32
    )
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("stride,padding,kernel", [(1, 0, 3), (2, 1, 4), (3, 1, 3), (2, 0, 2)])
def test_stamp_equals_conv_transpose2d(stride, padding, kernel):
    generator = torch.Generator().manual_seed(stride * 10 + padding)
    x = torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, 2, kernel, kernel, generator=generator, dtype=torch.float64)
    bias = torch.randn(2, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(
        stamp_transposed_conv(x, weight, bias, stride, padding),
        F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding),
    )


def test_max_unpool_puts_values_back_where_the_max_was():
    x = torch.tensor([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 1.0], [0.0, 0.0, 1.0, 2.0], [7.0, 0.0, 3.0, 0.0]]]])
    pooled, indices = max_pool_with_indices(x)
    torch.testing.assert_close(pooled, torch.tensor([[[[5.0, 8.0], [7.0, 3.0]]]]))
    restored = max_unpool(pooled, indices, output_size=x.shape[-2:])
    expected = torch.zeros_like(x)
    for row, col in [(0, 1), (1, 2), (3, 0), (3, 2)]:
        expected[0, 0, row, col] = x[0, 0, row, col]
    torch.testing.assert_close(restored, expected)
    with pytest.raises(ConvscopeError):
        max_unpool(pooled, indices[..., :1])


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_transposed_conv_equals_interpolation_inside(factor):
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64)
    up = bilinear_upsample_transposed(x.float(), factor).double()
    reference = bilinear_upsample(x, factor=factor)
    assert up.shape == reference.shape == (1, 2, 6 * factor, 7 * factor)
    inner = slice(factor, -factor)
    torch.testing.assert_close(up[..., inner, inner], reference[..., inner, inner], atol=1e-5, rtol=0)
    kernel = bilinear_kernel(2, factor)
    assert kernel[0, 1].abs().sum() == 0  # channel-wise: no mixing between channels


def test_linear_to_conv_matches_flattened_linear():
    linear = torch.nn.Linear(4 * 2 * 3, 5)
    x = torch.randn(2, 4, 2, 3)
    conv = linear_to_conv(linear, 4, (2, 3))
    torch.testing.assert_close(conv(x).flatten(1), linear(x.flatten(1)))
    with pytest.raises(ConvscopeError):
        linear_to_conv(linear, 5, (2, 3))


class TinyVGG(torch.nn.Module):
    """torchvision's VGG layout (features / avgpool / classifier), 5 poolings, small widths."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for width in (8, 8, 16, 16, 16):
            layers += [
                torch.nn.Conv2d(channels, width, 3, padding=1),
                torch.nn.ReLU(inplace=True),
                torch.nn.MaxPool2d(2),
            ]
            channels = width
        self.features = torch.nn.Sequential(*layers)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(7)
        self.classifier = torch.nn.Sequential(
            torch.nn.Linear(16 * 7 * 7, 64),
            torch.nn.ReLU(True),
            torch.nn.Dropout(),
            torch.nn.Linear(64, 64),
            torch.nn.ReLU(True),
            torch.nn.Dropout(),
            torch.nn.Linear(64, 1000),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@pytest.mark.parametrize("name", ["alexnet", "tiny_vgg", "resnet18"])
def test_fc_heads_convolutionalize_to_identical_logits(name):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        model = convscope.load_model(TinyVGG()) if name == "tiny_vgg" else convscope.load_model(f"torchvision:{name}")
    x = torch.rand(1, 3, 224, 224)
    before = model_state(model)
    fcn = convolutionalize(model)
    with torch.no_grad():
        logits = model(x)
        scores = fcn(x)
        larger = fcn(torch.rand(1, 3, 320, 288))
    torch.testing.assert_close(fcn.logits(x).detach(), logits, rtol=1e-4, atol=1e-5 * float(logits.abs().max()))
    if name != "resnet18":  # FC heads: a single cell at the training size, a grid on larger images
        assert scores.shape == (1, 1000, 1, 1)
        assert larger.shape[-2:] == ((320 - 224) // 32 + 1, (288 - 224) // 32 + 1)
    else:
        assert scores.shape == (1, 1000, 7, 7) and larger.shape[-2:] == (10, 9)
    assert_untouched(model, before)


def test_gap_head_of_embedded_model_averages_to_its_logits(model, small_batch):
    fcn = convolutionalize(model)
    with torch.no_grad():
        scores = fcn(small_batch)
        torch.testing.assert_close(scores.mean(dim=(-2, -1)), model(small_batch), rtol=1e-4, atol=1e-4)
    assert scores.shape == (2, 1000, 4, 4)


def test_tabby_heatmap_on_a_larger_chelsea(model):
    before = model_state(model)
    image = convscope.load_image("sample:chelsea", size=(448, 672), preprocessing="squash")
    heat = class_heatmap(model, image, "tabby")
    assert heat.probability.shape == (1, 14, 21) and heat.label == "tabby"
    assert_untouched(model, before)
    with torch.no_grad():
        per_location = convolutionalize(model)(image).argmax(1).flatten()
    cats = ((per_location >= 281) & (per_location <= 285)).float().mean()
    assert cats > 0.35, "many locations of a cat photo should be read as one of the cat classes"
    assert 281 <= int(per_location.bincount().argmax()) <= 285  # the commonest per-location class is a cat
    assert float(heat.probability.max()) > 0.2
    with pytest.raises(ConvscopeError):
        class_heatmap(model, image, "tabby catt dog")
