"""test/preprocess.sh end to end on the tiny synthetic set, in a scratch checkout (never touches data/)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _scratch_checkout(tmp_path):
    (tmp_path / "test").mkdir()
    shutil.copy(os.path.join(ROOT, "test", "preprocess.sh"), tmp_path / "test" / "preprocess.sh")
    os.symlink(os.path.join(ROOT, "tools"), tmp_path / "tools")
    return tmp_path


def _run(checkout, **env):
    full = dict(os.environ, PYTHON=sys.executable, **env)
    return subprocess.run(["sh", "test/preprocess.sh"], cwd=str(checkout), env=full, capture_output=True, text=True)


@pytest.mark.slow
def test_preprocess_sh_mini_writes_infos_and_anchors(synthetic, tmp_path):
    checkout = _scratch_checkout(tmp_path)
    proc = _run(checkout, DATA_ROOT=synthetic["root"], VERSION="v1.0-mini")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("nuscenes_infos_train.pkl", "nuscenes_infos_val.pkl"):
        assert (checkout / "data" / "infos" / "mini" / name).is_file(), "%s missing" % name
    shapes = {"kmeans_det_900.npy": (900, 11), "kmeans_map_100.npy": (100, 20, 2),
              "kmeans_motion_6.npy": (10, 6, 12, 2), "kmeans_plan_6.npy": (3, 6, 6, 2)}
    for name, shape in shapes.items():
        assert np.load(checkout / "data" / "kmeans" / name).shape == shape
        assert (checkout / "vis" / "kmeans" / name.replace(".npy", ".png")).is_file()


def test_preprocess_sh_stops_at_the_first_failing_step(tmp_path):
    checkout = _scratch_checkout(tmp_path)
    missing = _run(checkout, DATA_ROOT=str(tmp_path / "nowhere"), VERSION="v1.0-mini")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    proc = _run(checkout, DATA_ROOT=str(tmp_path / "empty"), VERSION="v1.0-mini")
    assert proc.returncode != 0, "a failing converter must fail the script"
    assert "v1.0-mini/attribute.json is missing" in proc.stderr and "Traceback" not in proc.stderr
    assert "k-means" not in proc.stdout, "k-means must not run after the converter failed"
    bad = _run(checkout, DATA_ROOT=str(tmp_path / "empty"), VERSION="v2")
    assert bad.returncode == 2 and "VERSION=v2" in bad.stderr
