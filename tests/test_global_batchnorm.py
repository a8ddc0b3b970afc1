"""BatchNorm over the global batch (robustness/global_batchnorm.py): in a one-rank gloo group the
all-reduced BatchNorm is plain BatchNorm (outputs, gradients, running statistics), for torch's
BatchNorm layers and timm's BatchNormAct2d (the embedded model), and the network's modules are
untouched. Two ranks against one process: tests/test_transfer.py (finetune) and
tests/test_robustness.py (train)."""

import copy

import pytest
import torch
from torch import nn

from convscope.robustness.global_batchnorm import global_batchnorm


@pytest.fixture
def one_rank_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _twins(net, x, weights, enabled, steps=2):
    """The gradients of ``steps`` training passes and the state of ``net`` (a float64 copy), with or without the mode."""
    net = copy.deepcopy(net).double().train()
    with global_batchnorm(enabled):
        for _ in range(steps):
            net.zero_grad()
            (net(x) * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    return grads, net.state_dict(), net.eval()(x)


def _same(plain, synced):
    """Equal up to float64 rounding: BatchNorm over 4 values per channel (the late 1 x 1 maps) is so
    ill-conditioned that float32 sums in another order move some gradients by 1e-3 relative; in float64
    the largest difference was 2e-12 of the largest gradient (theoretically-zero gradients included)."""
    for a, b in zip(plain, synced):
        assert a.keys() == b.keys()
        scale = max(float(v.double().abs().max()) for v in a.values())
        for name in a:
            torch.testing.assert_close(a[name].double(), b[name].double(), rtol=1e-7, atol=1e-9 * scale, msg=name)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_on_one_rank_it_is_plain_batchnorm(one_rank_group, momentum):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=momentum), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5)
    )
    net.append(nn.BatchNorm1d(5, momentum=momentum))
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64) * 3 + 1  # a mean far from 0: the variance is computed around it
    weights = torch.randn(6, 5, dtype=torch.float64)  # a loss whose gradient through the normalisation is not ~0
    plain, synced = _twins(net, x, weights, False), _twins(net, x, weights, True)
    _same(plain[:2], synced[:2])
    torch.testing.assert_close(plain[2], synced[2])


def test_timm_batchnorm_with_activation_keeps_its_activation(one_rank_group, model):
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    weights = torch.randn(4, 1000, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain, synced = _twins(model, x, weights, False, 1), _twins(model, x, weights, True, 1)
    _same(plain[:2], synced[:2])
    torch.testing.assert_close(plain[2], synced[2])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # copies were trained


def test_two_ranks_give_the_gradient_of_one_process_with_the_global_batch(tmp_path, model):
    """2 gloo ranks x 4 images under DDP (as `finetune` trains) against one process with the 8 images, in
    float64 so that float rounding does not hide the difference: with the BatchNorm statistics all-reduced
    the gradients are equal; with each rank's own statistics (before) they are not.

    Why not the weights after `finetune --mode finetune`: in float32 one process against itself at 1 and 2
    threads already differs by 9.5e-4 after one epoch (10 images, Adam's first step is lr * sign(g), and
    the BatchNorm over 1 x 1 maps of the late blocks turns summation order into sign flips), the same as 2
    ranks against one process with the statistics all-reduced (1.0e-3 to 1.1e-3, seeds 0-2)."""
    import textwrap

    from helpers import run_torchrun

    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 1000, (8,))
    torch.save((x, y), tmp_path / "batch.pt")
    script = tmp_path / "ranks.py"
    script.write_text(
        textwrap.dedent(f"""
        import torch, torch.distributed as dist, torch.nn.functional as F
        import convscope
        from convscope.robustness.global_batchnorm import global_batchnorm
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        x, y = torch.load(r"{tmp_path}/batch.pt")
        ddp = torch.nn.parallel.DistributedDataParallel(convscope.load_model().double().train())
        grads = {{}}
        for synced in (True, False):
            ddp.zero_grad()
            with global_batchnorm(synced):
                loss = F.cross_entropy(ddp(x[4 * rank : 4 * rank + 4]), y[4 * rank : 4 * rank + 4], reduction="sum")
                (loss * 2 / 8).backward()  # the global batch's mean loss once DDP averages the two ranks
            grads[synced] = {{n.removeprefix("module."): p.grad.clone() for n, p in ddp.named_parameters()}}
        if rank == 0:
            torch.save(grads, r"{tmp_path}/grads.pt")
        dist.barrier()
        dist.destroy_process_group()
    """)
    )
    run = run_torchrun(str(script), ports=(29751, 29752))
    assert run.returncode == 0, run.stderr[-6000:]
    one = copy.deepcopy(model).double().train()
    torch.nn.functional.cross_entropy(one(x), y).backward()
    expected = {n: p.grad for n, p in one.named_parameters()}
    ranks = torch.load(tmp_path / "grads.pt")
    scale = max(float(g.abs().max()) for g in expected.values())
    gaps = {synced: max(float((g[n] - expected[n]).abs().max()) for n in g) / scale for synced, g in ranks.items()}
    # measured (largest gradient difference / largest gradient, batch seed 0, 2026-12-02): all-reduced 2.8e-13 (float64
    # rounding), each rank's own statistics 3.9 (larger than the largest gradient)
    assert gaps[True] < 1e-9 and gaps[False] > 1e-3, gaps
