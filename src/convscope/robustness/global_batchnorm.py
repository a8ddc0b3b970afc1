"""BatchNorm over the global batch of a data-parallel run (``train`` / ``finetune`` under ``torchrun``).

Under ``DistributedDataParallel`` each rank's BatchNorm normalises with the mean and variance of
its own share of the batch, so a run with 2 ranks of 4 images is not one process with a batch
of 8 (Ioffe & Szegedy 2015 define the statistics over the mini-batch; "SyncBN", Peng et al.
2018 / Zhang et al. 2018, computes them over all devices). :func:`global_batchnorm` swaps every
BatchNorm of a network for one whose batch statistics are all-reduced over the process group
while it trains, and puts the original modules back on exit:

* CUDA (NCCL): :class:`torch.nn.SyncBatchNorm` (it refuses CPU tensors). Not run here: no GPU.
* CPU (gloo): :class:`AllReducedBatchNorm`: the per-channel sum and count, then the sum of
  squared deviations from the global mean (two passes, as exact as one process's BatchNorm
  when the mean is far from 0), each summed over the ranks by an all-reduce whose backward
  all-reduces the gradient (what ``torch.distributed.nn.functional.all_reduce`` does; that one
  is deprecated in torch 2.14), so the gradients are those of the global batch; running
  statistics updated as ``F.batch_norm`` does (unbiased variance, ``momentum`` or a
  cumulative average).

The swapped modules share the originals' parameters and buffers (the same tensors), so the
state dict keeps plain BatchNorm keys and values, a checkpoint written between epochs is an
ordinary one, and the caller gets its own module objects back. In eval mode (running
statistics) both behave as plain BatchNorm: no communication.
"""

from __future__ import annotations

__all__ = ["AllReducedBatchNorm", "global_batchnorm"]

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


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


class AllReducedBatchNorm(_BatchNorm):
    """BatchNorm (any input of rank >= 2, channels in dim 1) with batch statistics over all ranks (gloo)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        all_reduce = _SumOverRanks.apply
        if not (self.training or self.running_mean is None):
            return super().forward(input)  # running statistics: nothing to share
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = input.new_full((1,), input.numel() // input.size(1))
        totals = all_reduce(torch.cat([input.sum(dims), count]))
        number = totals[-1].detach()
        mean = totals[:-1] / number
        centred = input - mean.view(shape)
        variance = all_reduce(centred.square().sum(dims)) / number
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats:
            self._update_running(mean.detach(), variance.detach(), float(number))
        return output

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, variance: torch.Tensor, number: float) -> None:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        assert self.running_mean is not None and self.running_var is not None
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(variance * (number / max(number - 1, 1)), alpha=factor)


def _twin(module: _BatchNorm, kind: type[_BatchNorm]) -> _BatchNorm:
    """A ``kind`` module on ``module``'s own parameters and buffers (the same tensors)."""
    twin = kind(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    twin.weight, twin.bias = module.weight, module.bias
    twin.running_mean, twin.running_var = module.running_mean, module.running_var
    twin.num_batches_tracked = module.num_batches_tracked
    twin.train(module.training)
    return twin


@contextmanager
def global_batchnorm(network: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block, ``network``'s BatchNorm layers normalise over the global batch of the
    process group (see the module notes); ``enabled=False`` (one process) changes nothing."""
    swapped: list[tuple[nn.Module, str, _BatchNorm, _BatchNorm]] = []
    if enabled:
        cuda = any(tensor.is_cuda for tensor in network.parameters())
        for parent in list(network.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, _BatchNorm) and not isinstance(child, (nn.SyncBatchNorm, AllReducedBatchNorm)):
                    twin = _twin(child, nn.SyncBatchNorm if cuda else AllReducedBatchNorm)
                    setattr(parent, name, twin)
                    swapped.append((parent, name, child, twin))
    try:
        yield network
    finally:
        for parent, name, original, twin in reversed(swapped):
            original.train(twin.training)
            setattr(parent, name, original)
