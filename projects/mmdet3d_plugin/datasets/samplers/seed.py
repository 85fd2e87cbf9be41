"""One random seed shared by every rank, on any backend (CPU/gloo, CUDA/nccl, NPU/hccl)."""
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from mmcv.runner import get_dist_info

from ...device import get_device


def sync_random_seed(seed: Optional[int] = None) -> int:
    """Return ``seed`` (a fresh random one when None) as chosen by rank 0.

    Every rank must call it when torch.distributed is initialised with more than one process,
    otherwise it deadlocks. Without torch.distributed (or world size 1) it returns at once.
    """
    if seed is None:
        seed = int(np.random.randint(2**31))
    rank, world_size = get_dist_info()
    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return int(seed)
    value = torch.tensor(int(seed) if rank == 0 else 0, dtype=torch.int64, device=get_device())
    dist.broadcast(value, src=0)
    return int(value.item())
