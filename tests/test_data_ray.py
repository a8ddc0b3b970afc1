"""The ray engine of the dataset layer: a local Ray with 2 CPUs gives the local engine's numbers
for attack-eval, robustness and batch explain (same images, same seeds)."""

import numpy as np
import pytest

from convscope.attacks.evaluate import evaluate_attack
from convscope.attribution.batch import explain_dataset
from convscope.data import samples_folder
from convscope.errors import ConvscopeError
from convscope.robustness.imagenet_c import corruption_errors

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
try:
    samples_folder()
except ConvscopeError:
    pytest.skip("the labelled samples: pip install --no-deps foolbox==3.3.4", allow_module_level=True)


def test_ray_engine_equals_local_for_attack_eval_robustness_and_explain(model, tmp_path):
    options = dict(size=48, batch_size=5, workers=0, shard_batches=1)
    local_attack = evaluate_attack(model, "samples:imagenet", "pgd", 2 / 255, steps=3, **options)
    local_errors = corruption_errors(model, "samples:imagenet", ["fog", "contrast"], [1, 5], progress=False, **options)
    local_index, _ = explain_dataset(
        model, "samples:imagenet", "saliency", tmp_path / "local", size=48, batch_size=5, workers=0
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote_attack = evaluate_attack(model, "samples:imagenet", "pgd", 2 / 255, steps=3, engine="ray", **options)
        remote_errors = corruption_errors(
            model, "samples:imagenet", ["fog", "contrast"], [1, 5], progress=False, engine="ray", **options
        )
        remote_index, _ = explain_dataset(
            model, "samples:imagenet", "saliency", tmp_path / "ray", size=48, batch_size=5, workers=0, engine="ray"
        )
    finally:
        ray.shutdown()
    for key in ("images", "labelled", "clean_accuracy", "robust_accuracy", "success_rate", "attacked", "top5_accuracy"):
        assert getattr(remote_attack, key) == getattr(local_attack, key), key
    # actors run 1 thread, the test 1-2: float sums differ in the last bits only
    assert remote_attack.mean_l2 == pytest.approx(local_attack.mean_l2, rel=1e-4)
    assert remote_errors.errors == local_errors.errors and remote_errors.clean == local_errors.clean
    local_rows, remote_rows = local_index.read_text().splitlines(), remote_index.read_text().splitlines()
    assert [r.split(",")[:3] for r in remote_rows] == [r.split(",")[:3] for r in local_rows] and len(local_rows) == 21
    for part in range(4):
        np.testing.assert_allclose(
            np.load(tmp_path / "ray" / "maps" / f"{part:06d}.npz")["maps"],
            np.load(tmp_path / "local" / "maps" / f"{part:06d}.npz")["maps"],
            rtol=1e-3,
            atol=1e-6,
        )
