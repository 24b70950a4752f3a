"""Distributed data parallel through ``torchrun`` (single or multi node), or a no-op when alone.

``torchrun --nproc_per_node N -m trainer.cli ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; the
trainer then shards the data with a DistributedSampler, averages gradients with DDP, gathers
validation predictions from every rank so that all ranks take the same early-stopping decision,
and does all file I/O on rank 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(info: DistInfo, n: int, idx: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """Each rank scored rows ``idx`` of ``n``; return the full arrays on every rank."""
    if not info.enabled:
        return list(arrays)
    parts: list = [None] * info.world
    dist.all_gather_object(parts, (idx, arrays))
    out = [np.full((n, *a.shape[1:]), np.nan, dtype=np.float64) for a in arrays]
    for pidx, parrs in parts:
        for o, a in zip(out, parrs, strict=True):
            o[pidx] = a
    return out
