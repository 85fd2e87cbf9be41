"""Eval DistributedSampler and training DistributedGroupSampler partitions."""
import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.samplers import DistributedGroupSampler, DistributedSampler, build_sampler


class InfoDataset:
    """Sequences of lengths 4, 3, 5, 2 (a 10 s gap or a new vehicle prefix separates them)."""

    def __init__(self):
        self.data_infos = []
        time = 0.0
        for seq, length in enumerate([4, 3, 5, 2]):
            vehicle = "n015" if seq == 3 else "n008"
            if seq in (1, 2):
                time += 10.0
            for _ in range(length):
                self.data_infos.append(dict(timestamp=int(time * 1e6), lidar_path=f"x/{vehicle}-{seq}.bin"))
                time += 0.5
        self.sequences = np.repeat(np.arange(4), [4, 3, 5, 2])

    def __len__(self):
        return len(self.data_infos)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])
def test_eval_shards_are_contiguous_whole_sequences_covering_everything(world):
    dataset = InfoDataset()
    shards = [list(DistributedSampler(dataset, num_replicas=world, rank=r, shuffle=False)) for r in range(world)]
    assert sum(shards, []) == list(range(len(dataset))), f"rank-ordered shards {shards} lose or repeat samples"
    for r, shard in enumerate(shards):
        for seq in set(dataset.sequences[shard]):
            assert set(np.flatnonzero(dataset.sequences == seq)) <= set(shard), f"sequence {seq} split off rank {r}"
        assert len(DistributedSampler(dataset, num_replicas=world, rank=r, shuffle=False)) == len(shard), "__len__"


def test_eval_sampler_refuses_shuffle_and_builds_from_registry():
    with pytest.raises(ValueError, match="shuffle"):
        DistributedSampler(InfoDataset(), num_replicas=1, rank=0, shuffle=True)
    sampler = build_sampler(dict(type="DistributedSampler"), dict(dataset=InfoDataset(), num_replicas=2, rank=1,
                                                                  shuffle=False, seed=0))
    assert list(sampler) == list(range(7, 14)), f"rank 1 of 2 got {list(sampler)}"


class FlagDataset:
    def __init__(self):
        self.flag = np.repeat(np.arange(3), [5, 2, 4])

    def __len__(self):
        return len(self.flag)


def test_group_sampler_batches_stay_in_one_group_and_cover_all():
    dataset, world, spg = FlagDataset(), 2, 2
    shards = []
    for rank in range(world):
        sampler = DistributedGroupSampler(dataset, samples_per_gpu=spg, num_replicas=world, rank=rank, seed=1)
        sampler.set_epoch(3)
        shard = list(sampler)
        assert len(shard) == len(sampler), "__len__ differs from the shard"
        for b in range(0, len(shard), spg):
            assert len(set(dataset.flag[shard[b : b + spg]])) == 1, f"batch {shard[b:b + spg]} mixes groups"
        shards.append(shard)
    assert len(shards[0]) == len(shards[1]), "ranks must get equal shard sizes"
    assert set(shards[0]) | set(shards[1]) == set(range(len(dataset))), "a sample is never drawn"
    again = DistributedGroupSampler(dataset, samples_per_gpu=spg, num_replicas=world, rank=0, seed=1)
    again.set_epoch(3)
    assert list(again) == shards[0], "same seed and epoch must give the same order"
