"""BatchNorm over the global batch (robustness/global_batchnorm.py): in a one-rank gloo group the
all-reduced BatchNorm is plain BatchNorm (outputs, gradients, running statistics), and the network
gets its own modules back. The two-rank run against one process is in tests/test_transfer.py."""

import pytest
import torch
from torch import nn

from convscope.robustness.global_batchnorm import AllReducedBatchNorm, global_batchnorm


@pytest.fixture
def one_rank_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def network():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5)
    )


@pytest.mark.parametrize("momentum", [0.1, None])
def test_all_reduced_batchnorm_on_one_rank_is_plain_batchnorm(one_rank_group, momentum):
    plain, synced = network(), network()
    for module in (*plain.modules(), *synced.modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum
    originals = list(synced.modules())
    keys = synced.state_dict().keys()
    x = torch.rand(6, 3, 8, 8) * 3 + 1  # a mean far from 0: the variance is computed around it
    weights = torch.randn(6, 5)  # a loss whose gradient through the normalisation is not ~0
    with global_batchnorm(synced) as inside:
        assert isinstance(inside[1], AllReducedBatchNorm) and isinstance(inside[5], AllReducedBatchNorm)
        assert inside.state_dict().keys() == keys
        for _ in range(2):
            for net in (plain, synced):
                net.zero_grad()
                (net(x) * weights).sum().backward()
        inside.eval()
        torch.testing.assert_close(inside(x), plain.eval()(x))
    assert list(synced.modules()) == originals and not synced.training  # its own modules, its mode
    for (name, a), b in zip(plain.state_dict().items(), synced.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for (name, a), b in zip(plain.named_parameters(), synced.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_one_process_changes_nothing():
    net = network()
    modules = list(net.modules())
    with global_batchnorm(net, enabled=False):
        assert list(net.modules()) == modules
