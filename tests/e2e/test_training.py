"""End to end on the tiny synthetic set: distributed training, exact resume, stage 1 -> 2, learning, evaluation."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch

from .conftest import CONFIG1, CONFIG2, ROOT, run, train

pytestmark = pytest.mark.slow


def json_log(work_dir: str):
    logs = sorted(glob.glob(os.path.join(work_dir, "*.log.json")))
    assert logs, f"no mmcv json log in {work_dir}"
    with open(logs[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def state_dict(path: str):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_two_process_gloo_run_trains_on_both_ranks_and_checkpoints_once(stage1_dist):
    checkpoints = sorted(os.path.basename(p) for p in glob.glob(os.path.join(stage1_dist, "iter_*.pth")))
    assert checkpoints == ["iter_8.pth"], f"expected one final checkpoint, got {checkpoints}"
    assert os.path.realpath(os.path.join(stage1_dist, "latest.pth")) == os.path.join(
        os.path.realpath(stage1_dist), "iter_8.pth"), "latest.pth must point at the final checkpoint"
    entries = [e for e in json_log(stage1_dist) if e.get("mode") == "train"]
    assert [e["iter"] for e in entries] == list(range(1, 9)), "every iteration 1..8 must be logged once"
    assert all(e["loss"] > 0 and e["loss"] == e["loss"] for e in entries), "losses must be finite and positive"
    text_log = sorted(glob.glob(os.path.join(stage1_dist, "*.log")))[-1]
    with open(text_log) as f:
        text = f.read()
    # every step all-reduces gradients over the gloo group, so 8 finished steps mean both ranks trained
    assert "world size 2" in text, "the run must train on 2 processes"


def test_resume_from_latest_gives_the_same_weights_as_an_uninterrupted_run(e2e_env, tmp_path):
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    train(CONFIG1, full, e2e_env, "--cfg-options", "runner.max_iters=3")
    train(CONFIG1, part, e2e_env, "--cfg-options", "runner.max_iters=3", "--stop-at-iter", "2")
    assert not os.path.exists(os.path.join(part, "iter_3.pth")), "--stop-at-iter 2 must stop before iteration 3"
    train(CONFIG1, part, e2e_env, "--cfg-options", "runner.max_iters=3",
          "--resume-from", os.path.join(part, "latest.pth"))
    expected, resumed = state_dict(os.path.join(full, "iter_3.pth")), state_dict(os.path.join(part, "iter_3.pth"))
    assert expected.keys() == resumed.keys(), "resumed checkpoint has different keys"
    for key, value in expected.items():
        diff = (value.double() - resumed[key].double()).abs().max().item() if value.numel() else 0.0
        assert diff <= 1e-6, f"{key} differs by {diff} after resume"


def test_stage2_from_stage1_misses_exactly_the_motion_planning_head(stage2_run):
    log = stage2_run["log"]
    assert "missing keys in source state_dict" in log, "stage 2 must report the keys stage 1 lacks"
    missing_line = log.split("missing keys in source state_dict:", 1)[1].splitlines()[0]
    missing = [k.strip() for k in missing_line.split(",") if k.strip()]
    assert missing, "no missing keys parsed"
    assert all(k.startswith("head.motion_plan_head.") for k in missing), (
        f"keys outside the motion-planning head are missing: {[k for k in missing if 'motion_plan' not in k][:5]}")
    # mmcv's load_state_dict does not report BatchNorm's num_batches_tracked buffers as missing
    expected = {k for k in state_dict(os.path.join(stage2_run["work_dir"], "iter_2.pth"))
                if k.startswith("head.motion_plan_head.") and not k.endswith("num_batches_tracked")}
    assert set(missing) == expected, f"missing keys differ from the motion head: {sorted(expected ^ set(missing))[:5]}"
    assert "unexpected key" not in log, "a stage-1 checkpoint must have no keys stage 2 lacks"


def test_short_training_lowers_the_classification_and_depth_losses(stage1_dist):
    entries = [e for e in json_log(stage1_dist) if e.get("mode") == "train"]
    # regression terms start at 0 (no prediction passes cls_threshold_to_reg yet) and grow as the
    # classifier learns, so the test follows the terms that are active from the first step
    terms = [k for k in entries[0] if k.endswith(("loss_cls_0", "loss_cls_1")) or k == "loss_dense_depth"]
    assert len(terms) == 5, f"expected det/map cls losses of 2 decoders and the depth loss, got {terms}"
    for term in terms:
        first = sum(e[term] for e in entries[:3]) / 3
        last = sum(e[term] for e in entries[-3:]) / 3
        assert last < first, f"{term} did not fall: first 3 iterations {first:.4f}, last 3 {last:.4f}"


def test_test_py_prints_every_metric_group(e2e_env, stage2_run, tmp_path):
    checkpoint = os.path.join(stage2_run["work_dir"], "iter_2.pth")
    proc = run([sys.executable, "tools/test.py", CONFIG2, checkpoint, "--eval", "bbox", "--work-dir", str(tmp_path)],
               e2e_env)
    for group in ("mAP:", "NDS:", "AMOTA:", "mAP_normal", "epa=", "ade=", "L2:"):
        assert group in proc.stdout, f"tools/test.py did not print {group!r}"


def test_corrupt_image_fails_with_one_line_naming_file_and_sample(e2e_env, tmp_path):
    from tools.data_converter import synthetic_nuscenes
    from tools.data_converter.nuscenes_converter import create_nuscenes_infos

    from .conftest import TINY, make_env

    # its own copy of the set (the infos hold the image paths, so the shared set cannot be redirected)
    data_root = str(tmp_path / "data")
    synthetic_nuscenes.generate(data_root, **TINY)
    train_path, _ = create_nuscenes_infos(data_root, str(tmp_path / "infos"), data_root, "nuscenes",
                                          version="v1.0-mini")
    for path in glob.glob(os.path.join(data_root, "samples", "CAM_FRONT", "*.jpg")):
        with open(path, "wb") as f:
            f.write(b"not a jpeg")
    env = make_env(data_root, os.path.dirname(train_path), e2e_env["SPARSEDRIVE_E2E_ANCHOR_DIR"])
    proc = train(CONFIG1, str(tmp_path / "work"), env, "--cfg-options", "runner.max_iters=1", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0, "a corrupt image must fail the run"
    assert "Traceback" not in proc.stderr, f"a user error must not show a traceback:\n{proc.stderr[-2000:]}"
    assert len(errors) == 1, f"expected one error line, got {errors}"
    assert "CAM_FRONT" in errors[0] and "sample" in errors[0], f"the error must name the image and sample: {errors[0]}"


def test_outputs_of_the_scripts_are_git_ignored():
    written = ["test/output/run/stage1/iter_1.pth", "work_dirs/sparsedrive_small_stage1/x.log", "ckpt/stage1.pth",
               "data/synthetic_nuscenes/samples/a.jpg", "data/infos/mini/nuscenes_infos_train.pkl",
               "data/kmeans/kmeans_det_900.npy", "vis/kmeans/det.png", "tools/__pycache__/train.cpython-311.pyc"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True)
    ignored = set(proc.stdout.split())
    assert ignored == set(written), f"not git-ignored: {sorted(set(written) - ignored)}"
