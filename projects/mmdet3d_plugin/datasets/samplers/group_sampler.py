"""mmdet-style distributed group sampler: every batch on a rank comes from one ``dataset.flag`` group."""
import math
from typing import Iterator, List, Optional

import numpy as np
import torch
from mmcv.runner import get_dist_info
from torch.utils.data import Sampler

from .sampler import SAMPLER
from .seed import sync_random_seed


@SAMPLER.register_module()
class DistributedGroupSampler(Sampler):
    """Shuffle within groups, pad each group to whole global batches, shuffle batches, shard by rank.

    Each epoch (``set_epoch``) reshuffles with ``seed + epoch``. Unused by the upstream configs
    (training uses :class:`GroupInBatchSampler`); selectable as ``shuffler_sampler``.

    Args:
        dataset: needs ``flag`` [len(dataset)] int group ids.
        samples_per_gpu: batch size per rank.
        num_replicas: number of ranks (default: from torch.distributed).
        rank: this rank (default: from torch.distributed).
        seed: shared seed; None draws one on rank 0 and broadcasts it.
    """

    def __init__(
        self,
        dataset,
        samples_per_gpu: int = 1,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        seed: Optional[int] = 0,
    ) -> None:
        if not hasattr(dataset, "flag"):
            raise ValueError("DistributedGroupSampler: the dataset has no 'flag'; build it with with_seq_flag=True.")
        dist_rank, dist_world_size = get_dist_info()
        self.dataset = dataset
        self.samples_per_gpu = samples_per_gpu
        self.num_replicas = dist_world_size if num_replicas is None else num_replicas
        self.rank = dist_rank if rank is None else rank
        self.seed = sync_random_seed(seed)
        self.epoch = 0
        self.flag = np.asarray(dataset.flag, dtype=np.int64)
        self.group_sizes = np.bincount(self.flag)
        per_group = [self._padded(size) // self.num_replicas for size in self.group_sizes]
        self.num_samples = int(sum(per_group))
        self.total_size = self.num_samples * self.num_replicas

    def _padded(self, size: int) -> int:
        chunk = self.samples_per_gpu * self.num_replicas
        return int(math.ceil(size / chunk)) * chunk

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.epoch + self.seed)
        indices: List[int] = []
        for group, size in enumerate(self.group_sizes):
            if size == 0:
                continue
            members = np.flatnonzero(self.flag == group)
            members = members[torch.randperm(int(size), generator=generator).numpy()].tolist()
            repeats = -(-self._padded(size) // int(size))
            indices.extend((members * repeats)[: self._padded(size)])
        spg = self.samples_per_gpu
        batch_order = torch.randperm(len(indices) // spg, generator=generator).tolist()
        indices = [index for b in batch_order for index in indices[b * spg : (b + 1) * spg]]
        offset = self.num_samples * self.rank
        return iter(indices[offset : offset + self.num_samples])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
