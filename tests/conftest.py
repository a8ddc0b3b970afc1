"""Shared fixtures: one real embedded model and real bundled photos for the whole session."""

import os

import pytest
import torch

import convscope

torch.set_num_threads(int(os.environ.get("CONVSCOPE_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def model():
    """The embedded ImageNet EfficientNet-Lite0 (never mutate it in a test)."""
    return convscope.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def chelsea():
    return convscope.load_image("sample:chelsea")


@pytest.fixture(scope="session")
def coffee():
    return convscope.load_image("sample:coffee")


@pytest.fixture(scope="session")
def small_batch(chelsea, coffee):
    """chelsea and coffee at 128 px: a real batch of 2 where the size does not matter."""
    return torch.nn.functional.interpolate(torch.cat([chelsea, coffee]), size=128, mode="bilinear",
                                           antialias=True, align_corners=False).clamp(0, 1)
