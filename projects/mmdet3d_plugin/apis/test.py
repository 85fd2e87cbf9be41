"""Inference over a data loader, on one process or gathered across ranks with nothing lost or duplicated.

Evaluation runs at batch 1 per device: the temporal caches (instance bank, instance queue) expect one
sequence of consecutive frames per batch slot.
"""
import os
import pickle
import shutil
from typing import List, Optional

import mmcv
import torch
import torch.distributed as dist
from mmcv.runner import get_dist_info

from .. import device


def single_gpu_test(model: torch.nn.Module, data_loader, show: bool = False) -> List[dict]:
    """Run ``model`` over ``data_loader`` in order; one result dict per sample."""
    model.eval()
    results: List[dict] = []
    progress = mmcv.ProgressBar(len(data_loader.dataset))
    for data in data_loader:
        with torch.no_grad():
            batch_results = model(return_loss=False, rescale=True, **data)
        results.extend(batch_results)
        for _ in range(len(batch_results)):
            progress.update()
    return results


def multi_gpu_test(
    model: torch.nn.Module, data_loader, tmpdir: Optional[str] = None, gpu_collect: bool = False
) -> Optional[List[dict]]:
    """Each rank runs its contiguous block of sequences; rank 0 returns all results in dataset order.

    Results are gathered through the process group, which works across machines that share nothing but the
    network; with a ``tmpdir`` (and not ``gpu_collect``) they go through files there instead, which every
    node must see (shared storage). Other ranks return None.
    """
    model.eval()
    rank, world_size = get_dist_info()
    results: List[dict] = []
    progress = mmcv.ProgressBar(len(data_loader.dataset)) if rank == 0 else None
    for data in data_loader:
        with torch.no_grad():
            batch_results = model(return_loss=False, rescale=True, **data)
        results.extend(batch_results)
        if progress is not None:
            for _ in range(len(batch_results) * world_size):
                progress.update()
    return collect_results(results, len(data_loader.dataset), None if gpu_collect else tmpdir)


def collect_results(part: List[dict], size: int, tmpdir: Optional[str] = None) -> Optional[List[dict]]:
    """Concatenate every rank's part in rank order (the sampler gives ranks contiguous blocks) on rank 0.

    Through the process group by default, through files in ``tmpdir`` when given. Other ranks return None.
    """
    rank, world_size = get_dist_info()
    if world_size == 1:
        return part[:size]
    parts = gather_parts(part) if tmpdir is None else _gather_parts_through_files(part, tmpdir)
    if rank != 0:
        return None
    return [result for rank_part in parts for result in rank_part][:size]


def gather_parts(part: list) -> Optional[List[list]]:
    """Every rank's ``part`` on rank 0, in rank order (None on the other ranks), through the process group.

    A part travels pickled in an int8 tensor on this rank's device (nccl and hccl move device tensors only),
    with the collectives every backend has (older torch_npu lacks ``gather`` on hccl): the sizes are
    all-gathered, then each rank broadcasts its part in turn, so no device holds more than the largest part.
    """
    rank, world_size = get_dist_info()
    dev = device.get_device()
    payload = torch.frombuffer(bytearray(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)), dtype=torch.int8)
    sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(world_size)]
    dist.all_gather(sizes, torch.tensor([payload.numel()], dtype=torch.long, device=dev))
    parts = []
    for src, size in enumerate(sizes):
        buffer = payload.to(dev) if src == rank else torch.empty(int(size.item()), dtype=torch.int8, device=dev)
        dist.broadcast(buffer, src=src)
        if rank == 0:
            parts.append(pickle.loads(buffer.cpu().numpy().tobytes()))
    return parts if rank == 0 else None


def _gather_parts_through_files(part: list, tmpdir: str) -> Optional[List[list]]:
    """Every rank's ``part`` on rank 0 through ``tmpdir/part_<rank>.pkl``; the folder is removed afterwards."""
    rank, world_size = get_dist_info()
    os.makedirs(tmpdir, exist_ok=True)
    path = os.path.join(tmpdir, f"part_{rank}.pkl")
    with open(path + ".tmp", "wb") as f:
        pickle.dump(part, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(path + ".tmp", path)
    dist.barrier()
    if rank != 0:
        return None
    parts = []
    for r in range(world_size):
        path = os.path.join(tmpdir, f"part_{r}.pkl")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--tmpdir {tmpdir}: {os.path.basename(path)} of rank {r} is missing; the folder "
                                    "must be on storage every node shares (or leave --tmpdir out to gather the "
                                    "results through the process group).")
        with open(path, "rb") as f:
            parts.append(pickle.load(f))
    shutil.rmtree(tmpdir, ignore_errors=True)
    return parts
