"""GroupInBatchSampler: disjoint sequences per batch slot, temporal order, determinism and resume."""
import itertools

import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.samplers import GroupInBatchSampler

# 7 groups of lengths 3, 2, 4, 1, 3, 2, 5 (20 frames)
FLAG = np.repeat(np.arange(7), [3, 2, 4, 1, 3, 2, 5])


class FakeDataset:
    def __init__(self, flag=FLAG, consistent=True):
        self.flag = flag
        self.keep_consistent_seq_aug = consistent

    def __len__(self):
        return len(self.flag)

    def get_augmentation(self, rng=None):
        return dict(draw=float(rng.uniform()))


def take(sampler, num_batches):
    return list(itertools.islice(iter(sampler), num_batches))


def slot_runs(batches, slot):
    """Per batch slot: the list of (group, [frames]) runs in the order the slot visited them."""
    runs = []
    for batch in batches:
        idx = batch[slot]["idx"]
        group = int(FLAG[idx])
        if runs and runs[-1][0] == group and runs[-1][1][-1] == idx - 1:
            runs[-1][1].append(idx)
        else:
            runs.append((group, [idx]))
    return runs


def test_batches_have_batch_size_dicts_with_idx_and_aug():
    batches = take(GroupInBatchSampler(FakeDataset(), batch_size=2, world_size=1, rank=0, seed=3), 4)
    assert all(len(b) == 2 for b in batches), "every batch holds batch_size samples"
    assert set(batches[0][0]) == {"idx", "aug_config"}, f"sample keys {set(batches[0][0])}"


def test_slots_walk_whole_groups_in_temporal_order():
    batches = take(GroupInBatchSampler(FakeDataset(), batch_size=2, world_size=1, rank=0, seed=5), 40)
    for slot in range(2):
        for group, frames in slot_runs(batches, slot)[:-1]:  # the last run may be unfinished
            expected = np.flatnonzero(FLAG == group).tolist()
            assert frames == expected, f"slot {slot}: group {group} gave frames {frames}, expected {expected}"


def test_ranks_and_slots_share_out_each_permutation_without_loss_or_duplication():
    world, batch = 2, 2
    groups_per_slot = {}
    for rank in range(world):
        batches = take(GroupInBatchSampler(FakeDataset(), batch_size=batch, world_size=world, rank=rank, seed=11), 60)
        for slot in range(batch):
            groups_per_slot[rank * batch + slot] = [group for group, _ in slot_runs(batches, slot)]
    # the global stream interleaves slots: element k goes to slot k % 4
    stream = [groups_per_slot[k % 4][k // 4] for k in range(12)]
    first_perm, second_perm = stream[:7], stream[7:12]
    assert sorted(first_perm) == list(range(7)), f"first 7 groups {first_perm} must be a permutation of all groups"
    assert len(set(second_perm)) == 5, f"second permutation repeats a group: {second_perm}"


def test_same_seed_same_batches_other_seed_other_batches():
    def make(seed):
        return take(GroupInBatchSampler(FakeDataset(), batch_size=2, world_size=1, rank=0, seed=seed), 15)

    assert make(7) == make(7), "same seed must reproduce batches and aug configs"
    assert [b[0]["idx"] for b in make(7)] != [b[0]["idx"] for b in make(8)], "seed has no effect"


def test_aug_config_shared_within_a_group_only_when_consistent():
    batches = take(GroupInBatchSampler(FakeDataset(consistent=True), batch_size=1, world_size=1, rank=0, seed=2), 20)
    runs = slot_runs(batches, 0)
    augs, pos = [], 0
    for _, frames in runs:
        group_augs = {batches[pos + i][0]["aug_config"]["draw"] for i in range(len(frames))}
        assert len(group_augs) == 1, f"frames of one group got different augs {group_augs}"
        augs.append(group_augs.pop())
        pos += len(frames)
    assert len(set(augs)) == len(augs), "different groups must draw different augs"
    per_frame = take(GroupInBatchSampler(FakeDataset(consistent=False), batch_size=1, world_size=1, rank=0, seed=2), 6)
    assert len({b[0]["aug_config"]["draw"] for b in per_frame}) == 6, "per-frame augs expected"


@pytest.mark.parametrize("start", [0, 1, 9, 23])
def test_resume_at_start_iter_continues_the_uninterrupted_run(start):
    full = take(GroupInBatchSampler(FakeDataset(), batch_size=2, world_size=2, rank=1, seed=4), start + 10)
    resumed = GroupInBatchSampler(FakeDataset(), batch_size=2, world_size=2, rank=1, seed=4, start_iter=start)
    assert take(resumed, 10) == full[start:], f"resume at {start} differs from the uninterrupted run"
    later = GroupInBatchSampler(FakeDataset(), batch_size=2, world_size=2, rank=1, seed=4)
    later.set_start_iter(start)
    assert take(later, 10) == full[start:], "set_start_iter must behave like start_iter"


def test_too_few_groups_for_the_global_batch_raise():
    with pytest.raises(ValueError, match="sequence groups"):
        GroupInBatchSampler(FakeDataset(), batch_size=4, world_size=2, rank=0, seed=0)


def test_dataset_without_flag_raises():
    class NoFlag:
        def __len__(self):
            return 3

    with pytest.raises(ValueError, match="with_seq_flag"):
        GroupInBatchSampler(NoFlag(), batch_size=1, world_size=1, rank=0)


def test_defaults_work_without_torch_distributed():
    sampler = GroupInBatchSampler(FakeDataset(), batch_size=1, seed=None)
    assert (sampler.rank, sampler.world_size) == (0, 1), "no process group: rank 0 of 1"
    assert len(sampler) == len(FLAG), "__len__ is the dataset size"
