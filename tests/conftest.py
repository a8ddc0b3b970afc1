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
    return torch.nn.functional.interpolate(
        torch.cat([chelsea, coffee]), size=128, mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)


# ---------------------------------------------------------------- markers (registered in pyproject.toml)
# `make test` runs everything; `make test-fast` leaves out the three kinds below. One table here
# instead of decorators scattered over the files; a test file can also mark itself.
MARKED = {
    "browser": ("tests/e2e/",),
    "distributed": (
        "tests/test_dissect_ray.py",
        "tests/test_data_ray.py",
        "tests/test_robustness.py::test_train_runs_data_parallel_under_torchrun",
    ),
    "slow": (
        "tests/test_robustness.py::test_adversarial_training_beats_standard_training",
        "tests/test_segmentation_training.py",
        "tests/test_transfer.py",
        "tests/test_server_live.py",
        "tests/test_model_spec.py",
        # every registered method once (quick settings), ~10 s on a quiet machine
        "tests/test_attribution_checks.py::test_explain_all_uses_the_quick_settings_and_says_so",
    ),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.replace("\\", "/")
        path = path if path.startswith("tests/") else "tests/" + path
        for marker, prefixes in MARKED.items():
            if path.startswith(prefixes):
                item.add_marker(getattr(pytest.mark, marker))
