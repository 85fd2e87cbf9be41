"""Training batch sampler: every batch slot on every rank walks its own temporal sequences in order.

Idea from SOLOFusion's infinite group-each-sample-in-batch sampler, as used by SparseDrive.
"""
import itertools
from collections import deque
from typing import Deque, Dict, Iterator, List, Optional

import numpy as np
import torch
from mmcv.runner import get_dist_info
from torch.utils.data import Sampler

from .seed import sync_random_seed


class _SlotState:
    """Progress of one batch slot: its stream of group ids, the frames left and the current aug."""

    def __init__(self, groups: Iterator[int]) -> None:
        self.groups = groups
        self.frames: Deque[int] = deque()
        self.aug: Optional[Dict] = None


class GroupInBatchSampler(Sampler):
    """Yield batches of ``batch_size`` ``{'idx', 'aug_config'}`` dicts, forever.

    Groups are the ``dataset.flag`` ids (scene halves with ``sequences_split_num=2``). One infinite
    stream of group ids is drawn from concatenated ``torch.randperm(num_groups)`` with a generator
    seeded by ``seed`` (the same on every rank); global slot g = rank * batch_size + local slot takes
    stream elements g, g + G, g + 2G, ... (G = batch_size * world_size), so all slots see disjoint
    groups. A slot returns the frames of its group in temporal order, one per batch, then moves to
    its next group. With ``dataset.keep_consistent_seq_aug`` one aug config is drawn per group
    (all frames of a sequence share resize/crop/flip/rotate), otherwise one per frame.

    Augmentation draws use a per-rank ``numpy.random.RandomState`` seeded from (seed, rank)
    instead of upstream's global RNG, so a run is reproducible and resumable.

    Resume: the sequence of batches is a pure function of (seed, rank, world_size, batch_size,
    dataset.flag). ``start_iter`` (constructor or :meth:`set_start_iter`) makes the next
    ``iter(sampler)`` skip that many batches (cheap: no data is loaded), so a run resumed at
    iteration k gets exactly the batches an uninterrupted run would have got from k on. Every call
    to ``iter()`` restarts from ``start_iter``.

    Args:
        dataset: needs ``flag`` [len(dataset)] int group ids, ``keep_consistent_seq_aug`` and
            ``get_augmentation(rng=None)``.
        batch_size: samples per rank and batch.
        world_size: number of ranks (default: from torch.distributed, 1 without it).
        rank: this rank (default: from torch.distributed, 0 without it).
        seed: shared seed; None draws one on rank 0 and broadcasts it.
        skip_prob: probability of skipping one frame of the current group (upstream default 0).
        sequence_flip_prob: probability of walking a new group backwards (upstream default 0).
        start_iter: number of batches to skip at the start of iteration (resume).
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        world_size: Optional[int] = None,
        rank: Optional[int] = None,
        seed: Optional[int] = 0,
        skip_prob: float = 0.0,
        sequence_flip_prob: float = 0.0,
        start_iter: int = 0,
    ) -> None:
        dist_rank, dist_world_size = get_dist_info()
        self.world_size = dist_world_size if world_size is None else world_size
        self.rank = dist_rank if rank is None else rank
        if not hasattr(dataset, "flag"):
            raise ValueError(
                "GroupInBatchSampler: the dataset has no 'flag' (sequence groups); "
                "build it with with_seq_flag=True."
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = sync_random_seed(seed)
        self.skip_prob = skip_prob
        self.sequence_flip_prob = sequence_flip_prob
        self.start_iter = start_iter
        self.size = len(dataset)

        self.flag = np.asarray(dataset.flag, dtype=np.int64)
        self.group_sizes = np.bincount(self.flag)
        self.groups_num = len(self.group_sizes)
        self.global_batch_size = batch_size * self.world_size
        if self.groups_num < self.global_batch_size:
            raise ValueError(
                f"GroupInBatchSampler: {self.groups_num} sequence groups < global batch size "
                f"{self.global_batch_size} (batch {batch_size} x {self.world_size} ranks); "
                "use a smaller batch, more data or a larger sequences_split_num."
            )
        order = np.argsort(self.flag, kind="stable")
        bounds = np.cumsum(self.group_sizes)[:-1]
        self.group_idx_to_sample_idxs: List[List[int]] = [part.tolist() for part in np.split(order, bounds)]

    def _infinite_group_indices(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        while True:
            yield from torch.randperm(self.groups_num, generator=generator).tolist()

    def _group_indices_per_global_sample_idx(self, global_sample_idx: int) -> Iterator[int]:
        return itertools.islice(self._infinite_group_indices(), global_sample_idx, None, self.global_batch_size)

    def _fresh_state(self):
        slots = [
            _SlotState(self._group_indices_per_global_sample_idx(self.rank * self.batch_size + local))
            for local in range(self.batch_size)
        ]
        rng = np.random.RandomState([self.seed % 2**32, self.rank])
        return slots, rng

    def _next_batch(self, slots: List[_SlotState], rng: np.random.RandomState) -> List[Dict]:
        batch = []
        consistent = self.dataset.keep_consistent_seq_aug
        for slot in slots:
            skip = self.skip_prob > 0 and rng.uniform() < self.skip_prob and len(slot.frames) > 1
            if not slot.frames:
                frames = self.group_idx_to_sample_idxs[next(slot.groups)]
                if self.sequence_flip_prob > 0 and rng.uniform() < self.sequence_flip_prob:
                    frames = frames[::-1]
                slot.frames = deque(frames)
                if consistent:
                    slot.aug = self.dataset.get_augmentation(rng=rng)
            if not consistent:
                slot.aug = self.dataset.get_augmentation(rng=rng)
            if skip:
                slot.frames.popleft()
            batch.append(dict(idx=slot.frames.popleft(), aug_config=slot.aug))
        return batch

    def __iter__(self) -> Iterator[List[Dict]]:
        slots, rng = self._fresh_state()
        for _ in range(self.start_iter):
            self._next_batch(slots, rng)
        while True:
            yield self._next_batch(slots, rng)

    def __len__(self) -> int:
        """Length of the dataset (the sampler itself is infinite)."""
        return self.size

    def set_start_iter(self, start_iter: int) -> None:
        """Make the next ``iter()`` start at batch ``start_iter`` (resume after ``start_iter`` iterations)."""
        if start_iter < 0:
            raise ValueError(f"GroupInBatchSampler.set_start_iter: start_iter={start_iter} must be >= 0.")
        self.start_iter = start_iter

    def set_epoch(self, epoch: int) -> None:
        """Recorded only: the group stream is infinite and does not depend on the epoch."""
        self.epoch = epoch
