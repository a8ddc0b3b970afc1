"""BatchNorm over the global batch of a data-parallel run (``train`` / ``finetune`` under ``torchrun``).

Under ``DistributedDataParallel`` each rank's BatchNorm normalises with the mean and variance of
its own share of the batch, so a run with 2 ranks of 4 images is not one process with a batch
of 8 (Ioffe & Szegedy 2015 define the statistics over the mini-batch; "SyncBN", Peng et al.
2018 / Zhang et al. 2018, computes them over all devices). Within :func:`global_batchnorm`
every training-mode ``F.batch_norm`` call normalises with the statistics of the whole process
group instead: the per-channel sum and count, then the sum of squared deviations from the
global mean (two passes, as exact as one process's BatchNorm when the mean is far from 0), each
summed over the ranks by an all-reduce whose backward all-reduces the gradient (what
``torch.distributed.nn.functional.all_reduce`` does; that one is deprecated in torch 2.14), so
the gradients are those of the global batch; the running statistics are updated in place as
``F.batch_norm`` does (unbiased variance, the module's averaging factor).

It is a ``TorchFunctionMode`` on ``F.batch_norm``, not a module swap: ``nn.BatchNorm*``, timm's
``BatchNormAct2d`` (a BatchNorm subclass with its activation in ``forward``: swapping it for
``nn.SyncBatchNorm`` would drop the activation) and functional calls are all covered; the
network's modules, state-dict keys and checkpoints stay exactly as they are. One code path on
every device and backend (gloo on CPU, NCCL on CUDA: the CUDA path was not run here, no GPU),
instead of ``nn.SyncBatchNorm``, which needs module conversion and CUDA. Eval-mode BatchNorm
(running statistics) is left alone: no communication.
"""

from __future__ import annotations

__all__ = ["global_batch_norm", "global_batchnorm"]

import inspect
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with autograd: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(gradient.contiguous())


def global_batch_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Training-mode ``F.batch_norm`` (channels in dim 1) with the batch statistics of all ranks."""
    dims = [0, *range(2, input.dim())]
    shape = [1, -1] + [1] * (input.dim() - 2)
    count = input.new_full((1,), input.numel() // input.size(1))
    totals = _SumOverRanks.apply(torch.cat([input.sum(dims), count]))
    number = totals[-1].detach()
    mean = totals[:-1] / number
    centred = input - mean.view(shape)
    variance = _SumOverRanks.apply(centred.square().sum(dims)) / number
    output = centred * torch.rsqrt(variance + eps).view(shape)
    if weight is not None:
        output = output * weight.view(shape)
    if bias is not None:
        output = output + bias.view(shape)
    with torch.no_grad():
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
        if running_var is not None:
            unbiased = variance.detach() * (number / (number - 1).clamp(min=1))
            running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return output


_BATCH_NORM = inspect.signature(F.batch_norm)


class _GlobalBatchNorm(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            call = _BATCH_NORM.bind(*args, **kwargs)
            call.apply_defaults()
            if call.arguments.pop("training"):
                return global_batch_norm(**call.arguments)
        return func(*args, **kwargs)


@contextmanager
def global_batchnorm(enabled: bool = True) -> Iterator[None]:
    """Within the block, training-mode BatchNorm normalises over the global batch of the process
    group (see the module notes); ``enabled=False`` (one process) changes nothing."""
    if not enabled:
        yield
        return
    with _GlobalBatchNorm():
        yield
