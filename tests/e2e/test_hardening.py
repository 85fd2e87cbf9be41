"""End to end on the tiny set: resume after the newest checkpoint vanished, tools/test.py's checks and outputs."""
import glob
import json
import os
import sys

import pytest

from .conftest import CONFIG1, CONFIG2, run, train

pytestmark = pytest.mark.slow


def train_iters(work_dir: str):
    """Iterations logged by the newest run in ``work_dir``."""
    log = sorted(glob.glob(os.path.join(work_dir, "*.log.json")))[-1]
    with open(log) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    return [e["iter"] for e in entries if e.get("mode") == "train"]


def test_resume_auto_with_a_dangling_latest_continues_from_the_newest_loadable(e2e_env, tmp_path):
    work = str(tmp_path / "work")
    schedule = ["--cfg-options", "runner.max_iters=3", "checkpoint_config.interval=1"]
    train(CONFIG1, work, e2e_env, *schedule, "--stop-at-iter", "2")
    os.remove(os.path.join(work, "iter_2.pth"))  # latest.pth -> iter_2.pth now dangles
    stale = os.path.join(work, ".tmp_k1ll3d.pth")
    with open(stale, "wb") as f:
        f.write(b"\0" * 4096)  # what a save killed mid-write leaves
    proc = train(CONFIG1, work, e2e_env, *schedule, "--resume-from", "auto")
    log = proc.stdout + proc.stderr
    assert "latest.pth points at iter_2.pth, which is missing; resuming from iter_1.pth" in log, log[-3000:]
    assert train_iters(work) == [2, 3], "the resumed run must continue after iteration 1, not start again"
    assert not os.path.exists(stale), "the stale temporary file of a killed save must be removed"
    assert os.path.isfile(os.path.join(work, "iter_1.pth")), "the older checkpoint must be kept"


def test_test_py_refuses_bad_arguments_before_inference(e2e_env, stage1_dist, tmp_path):
    from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint

    stage1_ckpt = final_checkpoint(stage1_dist)
    ro = "/proc/sparsedrive_ro"  # not writable, even for root
    cases = [
        (["--eval", "foo"], "error: --eval: metric 'foo' is not known; use bbox, det, tracking, map, motion, planning"),
        (["--eval", "bbox", "--work-dir", ro], f"error: --work-dir {ro} is not writable"),
        (["--eval", "bbox", "--out", f"{ro}/r.pkl"], f"error: the folder of --out {ro} is not writable"),
        (["--eval", "bbox"], f"error: checkpoint {stage1_ckpt} is a stage-1 checkpoint (it has no "
                             "head.motion_plan_head weights) but the config builds the stage-2 model"),
    ]
    for extra, expected in cases:
        extra = extra if "--work-dir" in extra else extra + ["--work-dir", str(tmp_path / "wd")]
        proc = run([sys.executable, "tools/test.py", CONFIG2, stage1_ckpt, *extra], e2e_env, check=False)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, \
            f"{extra}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        assert len(lines) == 1 and lines[0].startswith(expected), f"{extra}: {lines}"
    assert not os.path.exists(str(tmp_path / "wd" / "results_mini.pkl")), "nothing may be written after a refusal"


def test_test_py_writes_into_the_work_dir_and_ends_with_the_metrics_path(e2e_env, stage2_run, tmp_path):
    checkpoint = os.path.join(stage2_run["work_dir"], "iter_2.pth")
    work = str(tmp_path / "test_out")
    proc = run([sys.executable, "tools/test.py", CONFIG2, checkpoint, "--eval", "map", "planning",
                "--work-dir", work], e2e_env)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.endswith(f"metrics written to {work}/metrics.json"), f"must end with the metrics path: {last}"
    assert "{'" not in proc.stdout, "the raw metrics dict must not be printed"
    assert os.path.isfile(os.path.join(work, "results_mini.pkl")), "raw results (upstream's name) in the work dir"
    with open(os.path.join(work, "metrics.json")) as f:
        metrics = json.load(f)
    assert "mAP_normal" in metrics and "L2" in metrics, "the map and planning groups were asked for"
    assert not any(key.startswith("img_bbox_NuScenes") for key in metrics), "detection was not asked for"
    assert not os.path.exists(os.path.join(stage2_run["work_dir"], "eval")), "nothing goes next to the checkpoint"
