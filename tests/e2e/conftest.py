"""Session fixtures for the end-to-end tests: a tiny synthetic nuScenes set and a way to run the CLIs on it.

The set has 2 scenes x 8 key frames (one mini_train scene, one mini_val scene) at the generator's
camera size; the e2e configs (tests/e2e/configs/) read its location from the environment.
"""
import os
import subprocess
import sys
from typing import Dict, List

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG1 = "tests/e2e/configs/e2e_stage1.py"
CONFIG2 = "tests/e2e/configs/e2e_stage2.py"
TINY = dict(scenes=2, samples=8, agents=8, sweeps=1, seed=0)
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory) -> Dict[str, str]:
    """Generate and convert the tiny set once; returns the environment the CLIs run with."""
    from tools.data_converter import synthetic_nuscenes
    from tools.data_converter.nuscenes_converter import create_nuscenes_infos

    root = str(tmp_path_factory.mktemp("e2e_nuscenes"))
    synthetic_nuscenes.generate(root, **TINY)
    train_path, _ = create_nuscenes_infos(root, str(tmp_path_factory.mktemp("e2e_infos")), root, "nuscenes",
                                          version="v1.0-mini")
    anchor_dir = str(tmp_path_factory.mktemp("e2e_anchors"))
    write_anchors(anchor_dir)
    return make_env(root, os.path.dirname(train_path), anchor_dir)


def write_anchors(folder: str) -> None:
    """Hand-made anchors under the k-means file names (k-means needs more data than the tiny set has)."""
    side = np.linspace(-40, 40, 8)
    det = np.array([[x, y, -0.5, 1, 1, 1, 1, 0, 0, 0, 0] for x in side for y in side], dtype=np.float32)
    offsets = np.linspace(-4, 4, 20)
    map_ = np.array([[[x, y + o] for o in offsets] for x in np.linspace(-12, 12, 4) for y in np.linspace(-25, 25, 5)],
                    dtype=np.float32)
    steps = np.arange(1, 13)[:, None]
    # straight lines: agent mode m heads at m * 60 deg with (m + 1) m per step; ego modes fan around +Y
    motion = np.stack([steps * (m + 1) * [np.cos(np.pi * m / 3), np.sin(np.pi * m / 3)] for m in range(6)])
    plan = np.stack([
        np.stack([steps[:6] * 0.5 * (m + 1) * [np.cos(a), np.sin(a)]
                  for m, a in enumerate(np.radians(90 + (cmd - 1) * 30 + 5 * (np.arange(6) - 2.5)))])
        for cmd in range(3)
    ])
    np.save(os.path.join(folder, "kmeans_det_900.npy"), det)
    np.save(os.path.join(folder, "kmeans_map_100.npy"), map_)
    np.save(os.path.join(folder, "kmeans_motion_6.npy"), np.tile(motion[None], (10, 1, 1, 1)).astype(np.float32))
    np.save(os.path.join(folder, "kmeans_plan_6.npy"), plan.astype(np.float32))


def make_env(data_root: str, info_root: str, anchor_dir: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARSEDRIVE_E2E_DATA_ROOT=data_root,
        SPARSEDRIVE_E2E_INFO_ROOT=info_root,
        SPARSEDRIVE_E2E_ANCHOR_DIR=anchor_dir,
        PYTHON=sys.executable,
        PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
    )
    for key in ("SPARSEDRIVE_BATCH_SIZE", "SPARSEDRIVE_NUM_GPUS", "SPARSEDRIVE_STOP_AT_ITER", "SPARSEDRIVE_DEMO"):
        env.pop(key, None)
    return env


def run(args: List[str], env: Dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a command from the repo root; with ``check`` a failure shows the end of its output."""
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def train(config: str, work_dir: str, env: Dict[str, str], *extra: str, check: bool = True):
    """Single-process tools/train.py with deterministic kernels, no evaluation, a log line per iteration."""
    return run([sys.executable, "tools/train.py", config, "--work-dir", work_dir, "--deterministic",
                "--no-validate", *extra], env, check=check)


@pytest.fixture(scope="session")
def stage1_dist(e2e_env, tmp_path_factory) -> str:
    """Work dir of a 2-process gloo stage-1 run through tools/dist_train.sh (8 iters = 2 passes over the 8 frames)."""
    work_dir = str(tmp_path_factory.mktemp("stage1_dist"))
    env = dict(e2e_env, SPARSEDRIVE_BATCH_SIZE="2", SPARSEDRIVE_NUM_GPUS="2", PORT=str(29000 + os.getpid() % 1000))
    run(["bash", "tools/dist_train.sh", CONFIG1, "2", "--work-dir", work_dir, "--deterministic", "--no-validate",
         "--cfg-options", "runner.max_iters=8", "checkpoint_config.interval=8"], env)
    return work_dir


@pytest.fixture(scope="session")
def stage2_run(e2e_env, stage1_dist, tmp_path_factory) -> Dict[str, str]:
    """Single-process stage-2 run of 2 iterations from the stage-1 checkpoint: {work_dir, log}."""
    from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint

    work_dir = str(tmp_path_factory.mktemp("stage2"))
    proc = train(CONFIG2, work_dir, e2e_env, "--load-from", final_checkpoint(stage1_dist),
                 "--cfg-options", "runner.max_iters=2")
    return dict(work_dir=work_dir, log=proc.stdout + proc.stderr)
