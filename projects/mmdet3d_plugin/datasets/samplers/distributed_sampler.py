"""Validation/test sampler: each rank gets a contiguous block of whole sequences, in dataset order."""
from typing import Iterator, List, Optional

from mmcv.runner import get_dist_info
from torch.utils.data import Sampler

from .sampler import SAMPLER

# a new sequence starts where consecutive key frames are further apart than this (seconds)
SEQUENCE_GAP_S = 4.0


def split_sequences(dataset) -> List[List[int]]:
    """Index lists of the temporal sequences of ``dataset`` in order.

    A sequence breaks where the timestamp gap exceeds 4 s or the vehicle prefix of the lidar file
    name (first 4 characters, e.g. ``n008``) changes. A dataset without ``data_infos`` is treated
    as one frame per sequence.
    """
    infos = getattr(dataset, "data_infos", None)
    if infos is None:
        return [[i] for i in range(len(dataset))]
    sequences: List[List[int]] = []
    prev_time, prev_vehicle = None, None
    for i, info in enumerate(infos):
        time = info["timestamp"] / 1e6
        vehicle = info["lidar_path"].split("/")[-1][:4] if "lidar_path" in info else None
        if i == 0 or abs(time - prev_time) > SEQUENCE_GAP_S or vehicle != prev_vehicle:
            sequences.append([i])
        else:
            sequences[-1].append(i)
        prev_time, prev_vehicle = time, vehicle
    return sequences


@SAMPLER.register_module()
class DistributedSampler(Sampler):
    """Deterministic per-rank shard for sequential evaluation.

    Rank r takes the whole sequences whose start offset lies in [r * L, (r + 1) * L) with
    L = len(dataset) // num_replicas; the last rank also takes every sequence after its block
    (upstream dropped those), so the concatenation of rank 0, 1, ... shards is exactly
    0 .. len(dataset) - 1. Shards are unequal in size.

    Args:
        dataset: the dataset (``data_infos`` with ``timestamp`` / ``lidar_path`` define sequences).
        num_replicas: number of ranks (default: from torch.distributed).
        rank: this rank (default: from torch.distributed).
        shuffle: must be False (kept for the mmdet signature).
        seed: unused (no shuffling), kept for the signature.
    """

    def __init__(
        self,
        dataset=None,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        shuffle: bool = True,
        seed: Optional[int] = 0,
    ) -> None:
        if shuffle:
            raise ValueError("DistributedSampler: shuffle=True is not supported; it keeps sequences in order.")
        dist_rank, dist_world_size = get_dist_info()
        self.dataset = dataset
        self.num_replicas = dist_world_size if num_replicas is None else num_replicas
        self.rank = dist_rank if rank is None else rank
        self.shuffle = shuffle
        self.seed = 0 if seed is None else seed
        self.epoch = 0
        self.indices = self._shard()
        self.num_samples = len(self.indices)

    def _shard(self) -> List[int]:
        split_length = len(self.dataset) // self.num_replicas
        begin, end = self.rank * split_length, (self.rank + 1) * split_length
        last = self.rank == self.num_replicas - 1
        indices: List[int] = []
        offset = 0
        for sequence in split_sequences(self.dataset):
            if begin <= offset and (offset < end or last):
                indices.extend(sequence)
            offset += len(sequence)
        return indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Recorded only: the shard does not change between epochs."""
        self.epoch = epoch
