"""Samplers: training batches that follow temporal sequences, and sequence-preserving eval shards."""
from .distributed_sampler import DistributedSampler
from .group_in_batch_sampler import GroupInBatchSampler
from .group_sampler import DistributedGroupSampler
from .sampler import SAMPLER, build_sampler
from .seed import sync_random_seed

__all__ = [
    "SAMPLER",
    "DistributedGroupSampler",
    "DistributedSampler",
    "GroupInBatchSampler",
    "build_sampler",
    "sync_random_seed",
]
