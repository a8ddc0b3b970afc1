"""ImageNet-C corruptions against the reference package ``imagecorruptions`` (test-only).

Deterministic corruptions must equal the reference within uint8 rounding; random ones must
match it in distribution (mean absolute change and mean shift over a few seeds).
"""

import importlib
import os

import numpy as np
import pytest
import torch

import convscope
from convscope.errors import ConvscopeError
from convscope.robustness import BENCHMARK_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt
from convscope.robustness import corruptions as ours
from helpers import load_imagecorruptions


@pytest.fixture(scope="module")
def reference():
    """imagecorruptions, made importable on today's numpy/skimage/setuptools (it uses
    pkg_resources, np.float_ and skimage's removed ``multichannel`` argument)."""
    pytest.importorskip("skimage")
    if importlib.util.find_spec("imagecorruptions") is None:
        pytest.skip("imagecorruptions is not installed")
    return load_imagecorruptions()


@pytest.fixture(scope="module")
def photo():
    """chelsea at 96 px, quantised to uint8 values so both sides see the same pixels."""
    image = convscope.load_image("sample:chelsea", 96, "squash")
    return (image * 255).round() / 255


def _reference_output(reference, image, name, severity, seed):
    np.random.seed(seed)
    array = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    result = reference.corrupt(array, corruption_name=name, severity=severity)
    return torch.from_numpy(result.astype(np.float32) / 255).permute(2, 0, 1)[None]


def test_registry_lists_the_15_plus_4_in_the_reference_order(reference):
    assert set(CORRUPTIONS.names()) == set(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
    assert list(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS) == reference.get_corruption_names("all")
    assert "corrupt" in dir(convscope)


@pytest.mark.parametrize("name", CORRUPTIONS.names(deterministic=True))
def test_deterministic_corruptions_equal_the_reference(reference, photo, name):
    for severity in (1, 3, 5):
        expected = _reference_output(reference, photo, name, severity, 0)
        got = corrupt(photo, name, severity)
        difference = (got - expected).abs()
        # the reference truncates to uint8; JPEG codecs differ in their DCT/upsampling details
        tolerance = 12 / 255 if name == "jpeg_compression" else 1.01 / 255
        assert difference.mean() < (2 / 255 if name == "jpeg_compression" else 0.6 / 255), (name, severity)
        assert torch.quantile(difference, 0.99) <= tolerance, (name, severity, difference.max())


def test_motion_blur_kernel_equals_the_reference_for_a_fixed_angle(reference, photo):
    array = (photo[0].permute(1, 2, 0).numpy() * 255).astype(np.float64)
    for radius, sigma, angle in [(10, 3, 30.0), (15, 8, -44.0), (20, 15, 7.5)]:
        expected = reference.corruptions._motion_blur(array, radius, sigma, angle)
        got = ours._motion_blur(photo.double(), radius, sigma, torch.tensor([angle]))[0].permute(1, 2, 0)
        assert torch.allclose(got * 255, torch.from_numpy(expected).double(), atol=1e-6)


def test_frost_layers_are_the_reference_photos_rescaled_as_opencv_does(reference):
    cv2 = pytest.importorskip("cv2")
    folder = os.path.join(os.path.dirname(reference.__file__), "frost")
    for index, name in enumerate(["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"]):
        photo = cv2.imread(os.path.join(folder, name))[..., ::-1]
        height, width = 400, 700  # larger than some photos, so both rescaling branches run
        scale = max(1.0, height / photo.shape[0], width / photo.shape[1]) * 1.1
        size = (int(np.ceil(photo.shape[1] * scale)), int(np.ceil(photo.shape[0] * scale)))
        expected = torch.from_numpy(
            cv2.resize(np.ascontiguousarray(photo), size, interpolation=cv2.INTER_CUBIC) / 255.0
        )
        got = ours._frost_rescaled(index, height, width, torch.device("cpu")).permute(1, 2, 0).double()
        assert got.shape == expected.shape
        assert (got - expected).abs().mean() < 1 / 255


RANDOM = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "elastic_transform",
    "spatter",
]


def test_fog_height_maps_match_the_reference_plasma_fractal(reference):
    np.random.seed(0)
    for decay in (2.0, 1.4):
        expected = torch.from_numpy(np.stack([reference.corruptions.plasma_fractal(128, decay) for _ in range(24)]))
        got = ours._plasma_fractal(24, 128, decay, torch.Generator().manual_seed(0), torch.device("cpu"))
        assert got.shape == expected.shape and got.min() == 0 and got.max() == 1
        assert abs(got.mean() - expected.mean()) < 0.05, decay
        assert abs(got.std() - expected.std()) < 0.03, decay
        # roughness: mean step between neighbours, set by the decay of the diamond-square noise
        roughness = lambda maps: (maps[:, 1:] - maps[:, :-1]).abs().mean()
        assert abs(roughness(got) - roughness(expected)) < 0.2 * roughness(expected), decay


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_match_the_reference_in_distribution(reference, photo, name):
    # seed sets 0-3, 4-7, 8-11 x threads 1/2/4: the largest gap used 0.40 of its tolerance
    # (motion blur's shift; glass blur 0.34, spatter 0.25, the noises at most 0.14)
    seeds = range(4)
    for severity in (1, 3, 5):
        expected = torch.cat([_reference_output(reference, photo, name, severity, seed) for seed in seeds])
        got = torch.cat([corrupt(photo, name, severity, seed=seed) for seed in seeds])
        base = photo.expand_as(got)
        change_expected, change_got = (expected - base).abs().mean(), (got - base).abs().mean()
        shift_expected, shift_got = (expected - base).mean(), (got - base).mean()
        assert abs(change_got - change_expected) < 0.015 + 0.2 * change_expected, (
            name,
            severity,
            change_got,
            change_expected,
        )
        assert abs(shift_got - shift_expected) < 0.015 + 0.2 * abs(shift_expected), (
            name,
            severity,
            shift_got,
            shift_expected,
        )


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_batched_seeded_in_range_and_stronger_with_severity(photo, name):
    batch = torch.cat([photo, photo.flip(-1)])
    first, again = corrupt(batch, name, 2, seed=7), corrupt(batch, name, 2, seed=7)
    assert first.shape == batch.shape and first.dtype == batch.dtype
    assert torch.equal(first, again)
    assert first.min() >= 0 and first.max() <= 1
    mild = (corrupt(batch, name, 1, seed=1) - batch).abs().mean()
    strong = (corrupt(batch, name, 5, seed=1) - batch).abs().mean()
    assert strong > 0.5 * mild > 0
    assert not batch.requires_grad


def test_bad_input_is_one_clear_error(photo):
    with pytest.raises(ConvscopeError, match="severity"):
        corrupt(photo, "fog", 6)
    with pytest.raises(ConvscopeError, match="did you mean"):
        corrupt(photo, "fogg", 1)
    with pytest.raises(ConvscopeError, match="32x32"):
        corrupt(photo[..., :16, :16], "fog", 1)
