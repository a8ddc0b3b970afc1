"""The Ray engine: a local Ray with 2 CPUs mines shards in parallel; the merged lists equal the local engine's."""

import pytest
import torch

import convscope

pytest.importorskip("ray")


def test_ray_engine_equals_local(model, tmp_path, local_ray):
    folder = convscope.sample_folder(tmp_path / "photos", n=8)
    options = dict(layers=["bn1", "blocks.3"], k=3, size=64, batch_size=2, progress=False)
    local = convscope.top_k_examples(model, folder, **options)
    remote = convscope.top_k_examples(model, folder, engine="ray", shards=2, **options)
    assert remote.complete and remote.seen == local.seen == 8
    for layer in ("bn1", "blocks.3"):
        assert torch.equal(remote[layer].indices, local[layer].indices)
        assert torch.equal(remote[layer].positions, local[layer].positions)
        # workers and the test may run other thread counts: summation order differs in the last bits only
        torch.testing.assert_close(remote[layer].values, local[layer].values, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            remote.statistics(layer)["mean_max"], local.statistics(layer)["mean_max"], rtol=1e-4, atol=1e-5
        )
