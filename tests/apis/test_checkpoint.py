"""Atomic checkpoint writes, the latest link, and finding a stage's final checkpoint by name."""
import os

import pytest
import torch

from projects.mmdet3d_plugin.apis import checkpoint


def test_atomic_save_round_trip_and_no_leftovers(tmp_path):
    path = tmp_path / "iter_10.pth"
    checkpoint.atomic_torch_save({"w": torch.arange(4.0)}, str(path))
    assert torch.equal(torch.load(path)["w"], torch.arange(4.0))
    assert os.listdir(tmp_path) == ["iter_10.pth"], "the temporary file must be renamed, not left behind"


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "latest_weights.pth"
    checkpoint.atomic_torch_save({"v": 1}, str(path))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        checkpoint.atomic_torch_save({"v": Unpicklable()}, str(path))
    assert torch.load(path)["v"] == 1, "a failed write must not touch the existing checkpoint"
    assert os.listdir(tmp_path) == ["latest_weights.pth"], "no torn temporary file may remain"


def test_link_latest_points_at_newest(tmp_path):
    for it in (5, 10):
        checkpoint.atomic_torch_save({"it": it}, str(tmp_path / f"iter_{it}.pth"))
        checkpoint.link_latest(str(tmp_path), f"iter_{it}.pth")
    assert os.readlink(tmp_path / "latest.pth") == "iter_10.pth"
    assert torch.load(tmp_path / "latest.pth")["it"] == 10


def test_final_checkpoint_by_highest_iteration(tmp_path):
    assert checkpoint.final_checkpoint(str(tmp_path)) is None
    for name in ("iter_9.pth", "iter_100.pth", "iter_20.pth", "iter_x.pth"):
        (tmp_path / name).write_bytes(b"")
    assert checkpoint.final_checkpoint(str(tmp_path)) == str(tmp_path / "iter_100.pth"), \
        "iteration numbers compare as numbers, not strings"
