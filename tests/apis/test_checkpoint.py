"""Atomic checkpoint writes, the latest link, and finding a stage's final checkpoint by name."""
import errno
import os
import subprocess

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


def _save_iters(folder, iters, latest=None):
    for it in iters:
        checkpoint.atomic_torch_save({"meta": {"iter": it}}, str(folder / f"iter_{it}.pth"))
    if latest is not None:
        os.symlink(f"iter_{latest}.pth", folder / "latest.pth")


def test_resume_auto_uses_latest_when_loadable(tmp_path):
    _save_iters(tmp_path, (2, 4), latest=4)
    assert checkpoint.resume_checkpoint(str(tmp_path)) == (str(tmp_path / "latest.pth"), None)


def test_resume_auto_with_dangling_latest_takes_newest_loadable_and_says_so(tmp_path):
    _save_iters(tmp_path, (2, 4), latest=6)  # iter_6.pth was deleted
    path, note = checkpoint.resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / "iter_4.pth"), f"must resume from the newest loadable checkpoint, got {path}"
    assert "iter_6.pth, which is missing" in note and "resuming from iter_4.pth" in note, note


def test_resume_auto_skips_a_torn_newest_checkpoint(tmp_path):
    _save_iters(tmp_path, (2, 4, 6), latest=6)
    data = (tmp_path / "iter_6.pth").read_bytes()
    (tmp_path / "iter_6.pth").write_bytes(data[: len(data) // 2])
    path, note = checkpoint.resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / "iter_4.pth") and "not a loadable checkpoint" in note, (path, note)


def test_resume_auto_stops_when_no_checkpoint_is_loadable(tmp_path):
    (tmp_path / "iter_3.pth").write_bytes(b"garbage")
    os.symlink("iter_5.pth", tmp_path / "latest.pth")
    with pytest.raises(checkpoint.CheckpointError, match=r"iter_5\.pth, which is missing, and .* holds no loadable iter_\*\.pth \(unreadable: iter_3\.pth\)"):
        checkpoint.resume_checkpoint(str(tmp_path))


def test_resume_auto_in_an_empty_work_dir_starts_afresh(tmp_path):
    assert checkpoint.resume_checkpoint(str(tmp_path)) == (None, None)
    assert checkpoint.resume_checkpoint(str(tmp_path / "not_yet_created")) == (None, None)


@pytest.mark.parametrize("content", ["truncated", "random", "text", "empty", "tensor"])
def test_unreadable_checkpoint_raises_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / f"{content}.pth"
    if content == "truncated":
        checkpoint.atomic_torch_save({"state_dict": {"w": torch.zeros(1000)}}, str(path))
        path.write_bytes(path.read_bytes()[:700])
    elif content == "random":
        path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))
    elif content == "text":
        path.write_text("this is a README, not a checkpoint\n")
    elif content == "empty":
        path.write_bytes(b"")
    else:
        torch.save(torch.zeros(3), path)
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.read_checkpoint(str(path))
    message = str(info.value)
    assert isinstance(info.value, OSError), "the CLIs print OSErrors as one line"
    assert str(path) in message and "\n" not in message, f"one line naming the file: {message!r}"


def _stage_model(stage):
    model = torch.nn.Module()
    model.head = torch.nn.Module()
    model.head.det_head = torch.nn.Linear(2, 2)
    if stage == 2:
        model.head.motion_plan_head = torch.nn.Linear(2, 2)
    return model


@pytest.mark.parametrize("ckpt_stage,model_stage", [(1, 2), (2, 1)])
def test_strict_load_of_the_other_stage_names_the_stage(tmp_path, ckpt_stage, model_stage):
    pytest.importorskip("mmcv")
    path = tmp_path / "other.pth"
    checkpoint.atomic_torch_save({"state_dict": _stage_model(ckpt_stage).state_dict()}, str(path))
    with pytest.raises(checkpoint.CheckpointError, match=(
            rf"{path}.* is a stage-{ckpt_stage} checkpoint .*builds the stage-{model_stage} model; "
            rf"use the stage-{ckpt_stage} config")):
        checkpoint.load_weights(_stage_model(model_stage), str(path), strict=True)
    # weights-only loading (stage 2 from stage 1) stays allowed
    checkpoint.load_weights(_stage_model(model_stage), str(path), strict=False)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_checkpoint_mode_follows_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        checkpoint.atomic_torch_save({"v": 1}, str(tmp_path / "iter_1.pth"))
    finally:
        os.umask(previous)
    actual = os.stat(tmp_path / "iter_1.pth").st_mode & 0o777
    assert actual == mode, f"umask {umask:o} must give mode {mode:o}, got {actual:o} (mkstemp's 0600 leaked)"


def test_disk_full_names_the_place_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "iter_2.pth"
    checkpoint.atomic_torch_save({"v": 1}, str(path))

    def full_disk_save(obj, f):
        f.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk_save)
    with pytest.raises(checkpoint.CheckpointError, match=rf"no space left on device .*{path} \(in {tmp_path}\)"):
        checkpoint.atomic_torch_save({"v": 2}, str(path))
    assert sorted(os.listdir(tmp_path)) == ["iter_2.pth"], "the temporary file must be removed"


def test_disk_full_inside_torch_save_is_recognised(tmp_path, monkeypatch):
    """torch.save turns the writer's ENOSPC into a bare RuntimeError; the recorded write error gives it away."""

    def save_with_failing_write(obj, f):
        real_write = f._f.write
        f._f.write = lambda data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
        try:
            f.write(b"x")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")
        finally:
            f._f.write = real_write

    monkeypatch.setattr(checkpoint.torch, "save", save_with_failing_write)
    with pytest.raises(checkpoint.CheckpointError, match="no space left on device"):
        checkpoint.atomic_torch_save({"v": 2}, str(tmp_path / "iter_2.pth"))


@pytest.mark.slow
def test_disk_full_on_a_real_tiny_filesystem(tmp_path):
    """A 256 KiB tmpfs (needs root and mount rights; skipped otherwise): the real torch.save failure."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        checkpoint.atomic_torch_save({"w": torch.zeros(1000)}, str(mount_point / "iter_1.pth"))
        with pytest.raises(checkpoint.CheckpointError, match=rf"no space left on device .*\(in {mount_point}\)"):
            checkpoint.atomic_torch_save({"w": torch.zeros(200_000)}, str(mount_point / "iter_2.pth"))
        assert sorted(os.listdir(mount_point)) == ["iter_1.pth"], "only the earlier checkpoint may remain"
        assert torch.load(mount_point / "iter_1.pth")["w"].shape == (1000,), "the earlier checkpoint must be intact"
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_stale_temporaries_of_our_naming_are_removed(tmp_path):
    ours = [".tmp_ab12cd.pth", ".tmp_latest.pth.4242"]
    others = [".tmp_notes.txt", "iter_1.pth", "tmp_x.pth", ".tmpfoo.pth"]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(checkpoint.remove_stale_temporaries(str(tmp_path))) == sorted(ours)
    assert sorted(os.listdir(tmp_path)) == sorted(others), "files not of our naming must stay"


KILLED_SAVE = """
import sys, time
sys.path.insert(0, {root!r})
from projects.mmdet3d_plugin.apis import checkpoint

def stuck_save(obj, f):
    f.write(b"PK" * 4096)
    f.flush()
    time.sleep(600)  # killed here, mid-write

checkpoint.torch.save = stuck_save
checkpoint.atomic_torch_save({{"v": 2}}, {path!r})
"""


@pytest.mark.slow
def test_kill_during_save_keeps_the_old_file_and_the_next_run_removes_the_leftover(tmp_path):
    import signal
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = tmp_path / "iter_2.pth"
    checkpoint.atomic_torch_save({"v": 1}, str(path))
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE.format(root=root, path=str(path))])
    try:
        deadline = time.time() + 120
        while not any(n.startswith(".tmp_") and os.path.getsize(tmp_path / n) > 0 for n in os.listdir(tmp_path)):
            assert time.time() < deadline and child.poll() is None, "the child never started writing"
            time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".tmp_")]
    assert len(leftovers) == 1, f"a killed save leaves its temporary file: {os.listdir(tmp_path)}"
    assert torch.load(path)["v"] == 1, "the previous checkpoint must be untouched"
    assert checkpoint.remove_stale_temporaries(str(tmp_path)) == leftovers
    assert os.listdir(tmp_path) == ["iter_2.pth"], "the next run's clean-up removes the leftover"
