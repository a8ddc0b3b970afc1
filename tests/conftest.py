"""Shared fixtures: one real embedded model and real bundled photos for the whole session."""

import os

import pytest
import torch

import convscope

# One thread count for the whole run (`make test`: 1 in each xdist worker; .ci/run reruns the `threads` tests
# at 2 and 4): this process, and every process a test starts (the CLI, torchrun, Ray workers), which read
# OMP_NUM_THREADS at start-up.
THREADS = os.environ.setdefault("CONVSCOPE_TEST_THREADS", "2")
os.environ["OMP_NUM_THREADS"] = THREADS
torch.set_num_threads(int(THREADS))


@pytest.fixture(scope="session")
def model():
    """The embedded ImageNet EfficientNet-Lite0 (never mutate it in a test)."""
    return convscope.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def chelsea():
    return convscope.load_image(
        "sample:chelsea", preprocessing="squash"
    )  # the reference numbers are for the squashed photo


@pytest.fixture(scope="session")
def coffee():
    return convscope.load_image(
        "sample:coffee", preprocessing="squash"
    )  # the reference numbers are for the squashed photo


@pytest.fixture(scope="session")
def small_batch(chelsea, coffee):
    """chelsea and coffee at 128 px: a real batch of 2 where the size does not matter."""
    return torch.nn.functional.interpolate(
        torch.cat([chelsea, coffee]), size=128, mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for one test module; the Ray engine's kept actor pool is closed with it."""
    ray = pytest.importorskip("ray")
    from convscope.data.ray_engine import close_pool

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    close_pool()
    ray.shutdown()


# ---------------------------------------------------------------- markers (registered in pyproject.toml)
# `make test` runs everything; `make test-fast` leaves out the three kinds below. One table here
# instead of decorators scattered over the files; a test file can also mark itself.
MARKED = {
    "browser": ("tests/e2e/",),
    "distributed": (
        "tests/test_dissect_ray.py",
        "tests/test_data_ray.py",
        "tests/test_robustness.py::test_train_runs_data_parallel_under_torchrun",
        "tests/test_transfer.py::test_finetune_runs_data_parallel_under_torchrun",
        "tests/test_global_batchnorm.py::test_two_ranks_give_the_gradient_of_one_process_with_the_global_batch",
    ),
    # thresholds on optimisations whose measured value moves with the thread count (docs/development.md,
    # "Thresholds and their measured spread"); .ci/run reruns them at 1 and 4 threads
    "threads": (
        "tests/test_optimize_features.py::test_visualization_beats_every_photo_and_plain_pixel_ascent",
        "tests/test_optimize_features.py::test_channel_grid_renders_one_image_per_channel",
        "tests/test_optimize_features.py::test_class_visualization_is_classified_as_the_class",
        "tests/test_optimize_features.py::test_inversion_error_is_small_at_a_shallow_layer_and_grows_with_depth",
        "tests/test_optimize_features.py::test_embedding_inversion_points_the_penultimate_features_at_the_target",
        "tests/test_optimize_features.py::test_style_transfer_cuts_the_style_loss_by_90_percent_and_keeps_the_content",
        "tests/test_optimize_features.py::test_deepdream_raises_the_energy_and_keeps_the_photo",
        "tests/test_attacks.py::test_targeted_pgd_turns_chelsea_into_a_zebra",
        "tests/test_attacks_eot.py::test_eot_survives_unseen_transforms_where_pgd_does_not",
        "tests/test_attacks_patch.py::test_patch_trained_on_photos_fools_unseen_photos_and_placements",
        "tests/test_attacks_substitute.py::test_substitute_learns_the_black_box_and_its_examples_transfer",
        "tests/test_attacks_autoattack.py::test_apgd_and_fab_agree_with_torchattacks_on_robust_digits",
        "tests/test_robustness.py::test_adversarial_training_beats_standard_training",
    ),
    "slow": (
        "tests/test_robustness.py::test_adversarial_training_beats_standard_training",
        "tests/test_segmentation_training.py",
        "tests/test_transfer.py",
        "tests/test_server_live.py",
        "tests/test_model_spec.py",
        # full AutoAttack (4 stages) on both sides, and rand (EOT-20) on a randomised defense: 15-16 s each
        # at 1 thread under load 16 (2026-12-02)
        "tests/test_attacks_autoattack.py::test_full_autoattack_agrees_with_torchattacks_autoattack",
        "tests/test_attacks_autoattack.py::test_a_randomised_defense_is_flagged_and_rand_attacks_its_expected_decision",
        # a U-Net trained 4 epochs on a streamed 24-pair VOC folder, then scored: ~2 s at 1 thread on a quiet
        # machine, 24-30 s here under load (2026-12-02)
        "tests/test_segmentation_folder.py::test_segment_train_on_a_voc_folder_lowers_the_loss",
        # every registered method once (quick settings), ~10 s on a quiet machine
        "tests/test_attribution_checks.py::test_explain_all_uses_the_quick_settings_and_says_so",
    ),
}


# `make test` runs two pytest-xdist workers at 1 thread each (`--dist loadgroup`): a test file stays in one
# worker (its module fixtures are built once), except the model-spec matrix, whose rows are the longest
# tests and are spread over both; the tests that start a Ray cluster or torchrun share one worker.
SPREAD = ("tests/test_model_spec.py",)


def pytest_collection_modifyitems(config, items):
    grouping = config.pluginmanager.hasplugin("xdist")
    for item in items:
        path = item.nodeid.replace("\\", "/")
        path = path if path.startswith("tests/") else "tests/" + path
        for marker, prefixes in MARKED.items():
            if path.startswith(prefixes):
                item.add_marker(getattr(pytest.mark, marker))
        if grouping and not path.startswith(SPREAD):
            cluster = path.startswith(MARKED["distributed"])
            item.add_marker(pytest.mark.xdist_group("cluster" if cluster else path.split("::")[0]))
