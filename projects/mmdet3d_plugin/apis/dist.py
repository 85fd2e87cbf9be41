"""Process-group set-up on whichever backend the device layer picked (hccl / nccl / gloo)."""
import datetime
import os
from typing import Tuple

import torch.distributed as dist

from .. import device


def init_distributed(launcher: str, timeout_s: int = 3600) -> None:
    """Join the process group started by ``torchrun`` (launcher ``pytorch``) and bind this rank's device."""
    if launcher != "pytorch":
        raise ValueError(f"--launcher {launcher!r} is not supported; use 'pytorch' (torchrun) or 'none'.")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        if key not in os.environ:
            raise RuntimeError(f"--launcher pytorch needs ${key}; start through tools/dist_train.sh (torchrun).")
    device.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=device.get_dist_backend(), timeout=datetime.timedelta(seconds=timeout_s))


def get_dist_info() -> Tuple[int, int]:
    """(rank, world_size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
