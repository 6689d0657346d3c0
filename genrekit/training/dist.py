"""Collective operations for DDP training: global-batch BatchNorm, per-rank seeds, sharded prediction.

What makes two processes train like one with the same global batch (see
:mod:`genrekit.training.launcher` for the whole story): BatchNorm statistics of the
global batch (:class:`torch.nn.SyncBatchNorm` on CUDA, :class:`GlobalBatchNorm` on
CPU/Gloo, where this torch's SyncBatchNorm does not run), per-rank dropout and
augmentation streams (:func:`seed_rank`), and validation predicted in slices and
all-gathered (:func:`predict_sharded`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .loop import predict_segments


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm layer normalise with the statistics of the global batch.

    :class:`torch.nn.SyncBatchNorm` on CUDA; :class:`GlobalBatchNorm` elsewhere (this
    torch's SyncBatchNorm is GPU-only). Parameters, buffers and ``state_dict`` keys stay.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlobalBatchNorm.convert(model)


def seed_rank(state, phase_index: int, epoch: int) -> None:
    """Seed this rank's dropout (torch's global generator) and augmentation (``state.aug_generator``).

    The seed mixes ``(config.seed, rank, phase, epoch)``: different on every rank,
    reproducible, and the same after a resume. The data-order generator is untouched.
    """
    seed = int(np.random.SeedSequence([state.config.seed % 2**32, state.rank, phase_index, epoch]).generate_state(1)[0])
    torch.manual_seed(seed)
    state.aug_generator = torch.Generator().manual_seed(seed)


@torch.no_grad()
def predict_sharded(model: nn.Module, x: torch.Tensor, device: torch.device, rank: int, world_size: int,
                    amp: bool = False) -> np.ndarray:
    """Softmax probabilities of all segments ``x``, each rank predicting one slice.

    Every rank returns the same ``(N, n_classes)`` array (all-gathered), so metrics
    computed from it agree on all ranks.
    """
    per = -(-len(x) // world_size)
    mine = x[rank * per: (rank + 1) * per]
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    padded = torch.zeros(per, model.config.n_classes, device=comm)
    if len(mine):
        padded[: len(mine)] = torch.from_numpy(predict_segments(model, mine, device, amp=amp)).to(comm)
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    return torch.cat(parts)[: len(x)].cpu().numpy()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        tensor = tensor.clone()
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm (1d/2d/3d) whose training statistics are those of the global batch.

    In training mode with a process group of more than one rank, the per-channel sum
    and count, then the sum of squared deviations, are all-reduced (two small
    collectives forward, two backward); otherwise it is plain BatchNorm. Works on any
    backend, including Gloo on CPU, where :class:`torch.nn.SyncBatchNorm` does not.
    The running variance is updated with the unbiased global variance, as BatchNorm does.
    """

    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        count = torch.full((1,), input.numel() // max(input.size(1), 1), dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]), self.process_group)
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims), self.process_group) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        self._update_running_stats(mean.detach(), var.detach(), float(n.detach()))
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, n: float) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)

    @classmethod
    def convert(cls, module: nn.Module, process_group=None) -> nn.Module:
        """Replace every BatchNorm layer of ``module`` (in place where possible), keeping its tensors."""
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      process_group=process_group)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child, process_group))
        return module


__all__ = ["sync_batchnorm", "seed_rank", "predict_sharded", "GlobalBatchNorm"]
