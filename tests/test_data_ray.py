"""The ray engine of the dataset layer: a local Ray with 2 CPUs gives the local engine's numbers
for attack-eval, robustness and batch explain (same images, same seeds).

One Ray and one actor pool for the module (the engine keeps its actors between calls: starting
them is most of the cost), 8 images at 32 px in 2 shards of one batch each, so both actors of the
pool get a shard and the driver merges out-of-order results."""

import os

import numpy as np
import pytest

from convscope.attacks.evaluate import evaluate_attack
from convscope.attribution.batch import explain_dataset
from convscope.data import open_dataset, samples_folder, take
from convscope.data.ray_engine import on_pool
from convscope.errors import ConvscopeError
from convscope.robustness.imagenet_c import corruption_errors

pytest.importorskip("ray")
try:
    samples_folder()
except ConvscopeError:
    pytest.skip("the labelled samples: pip install --no-deps foolbox==3.3.4", allow_module_level=True)

OPTIONS = dict(size=32, batch_size=4, workers=0)


def pid_job():
    """A job that says which actor process ran each item (and fails on a negative one). Defined in a
    function, so that Ray ships the class by value (actors cannot import this test module)."""

    class Pid:
        def prepare(self, device):
            self.device = str(device)

        def __call__(self, item):
            if item < 0:
                raise ConvscopeError(f"item {item} is negative")
            return item, os.getpid(), self.device

    return Pid()


def test_the_actor_pool_is_kept_between_calls(local_ray):
    first = list(on_pool(pid_job(), range(6)))
    second = list(on_pool(pid_job(), range(6)))
    assert sorted(r[0] for r in first) == list(range(6)) and {r[2] for r in first} == {"cpu"}
    pids = {r[1] for r in first}
    assert {r[1] for r in second} == pids and os.getpid() not in pids and len(pids) == 2
    with pytest.raises(ConvscopeError, match="^item -1 is negative$"):
        list(on_pool(pid_job(), [0, -1]))


@pytest.fixture(scope="module")
def images():
    return take(open_dataset("samples:imagenet", 32), 8)


def test_attack_eval_on_ray_equals_local(model, images, local_ray):
    local = evaluate_attack(model, images, "pgd", 2 / 255, steps=2, shard_batches=1, **OPTIONS)
    remote = evaluate_attack(model, images, "pgd", 2 / 255, steps=2, shard_batches=1, engine="ray", **OPTIONS)
    for key in ("images", "labelled", "clean_accuracy", "robust_accuracy", "success_rate", "attacked", "top5_accuracy"):
        assert getattr(remote, key) == getattr(local, key), key
    # actors run 1 thread, the test 1-2: float sums differ in the last bits only
    assert remote.mean_l2 == pytest.approx(local.mean_l2, rel=1e-4) and remote.images == 8


def test_robustness_on_ray_equals_local(model, images, local_ray):
    common = dict(progress=False, shard_batches=1, **OPTIONS)
    local = corruption_errors(model, images, ["fog", "contrast"], [1, 5], **common)
    remote = corruption_errors(model, images, ["fog", "contrast"], [1, 5], engine="ray", **common)
    assert remote.errors == local.errors and remote.clean == local.clean


def test_batch_explain_on_ray_equals_local(model, images, local_ray, tmp_path):
    local, _ = explain_dataset(model, images, "saliency", tmp_path / "local", **OPTIONS)
    remote, _ = explain_dataset(model, images, "saliency", tmp_path / "ray", engine="ray", **OPTIONS)
    local_rows, remote_rows = local.read_text().splitlines(), remote.read_text().splitlines()
    assert [r.split(",")[:3] for r in remote_rows] == [r.split(",")[:3] for r in local_rows] and len(local_rows) == 9
    for part in range(2):
        np.testing.assert_allclose(
            np.load(tmp_path / "ray" / "maps" / f"{part:06d}.npz")["maps"],
            np.load(tmp_path / "local" / "maps" / f"{part:06d}.npz")["maps"],
            rtol=1e-3,
            atol=1e-6,
        )


def test_another_pool_size_starts_a_new_pool(local_ray):  # last: the module's pool is replaced
    pids = {r[1] for r in on_pool(pid_job(), range(4))}
    assert {r[1] for r in on_pool(pid_job(), range(4), actors=1)}.isdisjoint(pids)
