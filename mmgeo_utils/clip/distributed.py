"""torchrun / DDP: process-group set-up and feature gathering for the contrastive denominator.

``torchrun --nproc_per_node N -m mmgeo_utils train-clip ...`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`init_distributed` joins them (NCCL on
GPUs, gloo on CPU, which is how CI proves this path on a 2-core machine).

Why gather: a contrastive loss is only as hard as its denominator. Each process encodes its
share of the global batch, then :func:`gather` concatenates every process's features with
``torch.distributed.nn.all_gather``, whose backward sends each process the gradient for its own
slice. Every process then computes the *same* loss over the *global* batch (open_clip's
``ClipLoss(gather_with_grad=True)`` layout); DDP averages the identical gradients, so N
processes train exactly like one process with the whole batch, up to float rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun set up; a plain ``python`` run is one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def gather(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients for the local slice."""
    if not info.enabled:
        return x
    return torch.cat([_ContiguousGrad.apply(part) for part in dist_nn.all_gather(x.contiguous())], dim=0)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous.

    On gloo, ``all_gather``'s backward is an all-to-all that silently mixes up strided
    gradients (an ``einsum`` over (B, K, D) negatives produces them); the test of this module
    caught it comparing two processes with one.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.contiguous()


def gather_no_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate a tensor that needs no gradient (masks) from every process."""
    if not info.enabled:
        return x
    is_bool = x.dtype == torch.bool  # gloo has no bool all_gather
    y = x.to(torch.uint8) if is_bool else x
    parts = [torch.empty_like(y) for _ in range(info.world_size)]
    dist.all_gather(parts, y.contiguous())
    out = torch.cat(parts, dim=0)
    return out.bool() if is_bool else out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
