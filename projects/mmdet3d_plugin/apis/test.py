"""Inference over a data loader, on one process or gathered across ranks with nothing lost or duplicated.

Evaluation runs at batch 1 per device: the temporal caches (instance bank, instance queue) expect one
sequence of consecutive frames per batch slot.
"""
import os
import pickle
import shutil
import tempfile
from typing import List, Optional

import mmcv
import torch
import torch.distributed as dist

from .dist import get_dist_info


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

    Results travel through files in a shared ``tmpdir`` (``gpu_collect`` is accepted for upstream's CLI
    and takes the same path). Other ranks return None.
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
    return collect_results(results, len(data_loader.dataset), tmpdir)


def collect_results(part: List[dict], size: int, tmpdir: Optional[str] = None) -> Optional[List[dict]]:
    """Concatenate every rank's part in rank order (the sampler gives ranks contiguous blocks)."""
    rank, world_size = get_dist_info()
    if world_size == 1:
        return part[:size]
    if tmpdir is None:
        shared = [tempfile.mkdtemp(prefix=".dist_test_") if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        tmpdir = shared[0]
    os.makedirs(tmpdir, exist_ok=True)
    with open(os.path.join(tmpdir, f"part_{rank}.pkl"), "wb") as f:
        pickle.dump(part, f)
    dist.barrier()
    if rank != 0:
        return None
    results: List[dict] = []
    for r in range(world_size):
        with open(os.path.join(tmpdir, f"part_{r}.pkl"), "rb") as f:
            results.extend(pickle.load(f))
    shutil.rmtree(tmpdir, ignore_errors=True)
    return results[:size]
