"""k-means anchor scripts: file names, shapes, post-processing, small-data rule and seeded determinism."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tools.kmeans import kmeans_det, kmeans_map, kmeans_motion, kmeans_plan, kmeans_utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXPECTED = {"det": ("kmeans_det_900.npy", (900, 11)), "map": ("kmeans_map_100.npy", (100, 20, 2)),
            "motion": ("kmeans_motion_6.npy", (10, 6, 12, 2)), "plan": ("kmeans_plan_6.npy", (3, 6, 6, 2))}
MODULES = {"det": kmeans_det, "map": kmeans_map, "motion": kmeans_motion, "plan": kmeans_plan}


@pytest.fixture(scope="module")
def anchors(infos, tmp_path_factory):
    out = tmp_path_factory.mktemp("kmeans")
    for kind, module in MODULES.items():
        module.main(kmeans_utils.parse_args(kind, ["--info-path", infos["train_path"], "--out-dir", str(out / "k"),
                                                   "--vis-dir", str(out / "vis"), "--seed", "3"]))
    return out


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_scripts_write_upstream_file_names_shapes_and_plots(anchors, kind):
    name, shape = EXPECTED[kind]
    arr = np.load(anchors / "k" / name)
    assert arr.shape == shape and arr.dtype == np.float64, "%s: %s %s" % (name, arr.shape, arr.dtype)
    assert np.isfinite(arr).all()
    assert (anchors / "vis" / name.replace(".npy", ".png")).stat().st_size > 1000, "plot missing"


def test_det_and_map_post_processing(anchors, infos):
    det = np.load(anchors / "k" / "kmeans_det_900.npy")
    assert np.all(det[:, 3:] == [1, 1, 1, 1, 0, 0, 0, 0]), "size 1, sin 1, cos 0, zero velocity"
    assert np.all(np.linalg.norm(det[:, :2], axis=1) < 55), "det centres come from boxes within 55 m"
    m = np.load(anchors / "k" / "kmeans_map_100.npy")
    assert np.allclose(m[:, :, 0], m[:, :1, 0]), "map anchors keep x constant"
    assert np.allclose(m[:, -1, 1] - m[:, 0, 1], 8.0), "map anchors are 8 m long along y"


def test_motion_anchors_are_in_the_agent_frame():
    """An agent heading +y (yaw pi/2) that moves 1 m per step along +y has future (k, 0) in its own frame."""
    traj = np.tile([0.0, 1.0], (12, 1))
    info = dict(gt_boxes=np.array([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, np.pi / 2]]), gt_names=np.array(["truck"]),
                gt_agent_fut_trajs=traj[None], gt_agent_fut_masks=np.ones((1, 12)))
    groups = kmeans_motion.agent_frame_futures([info])
    assert [len(g) for g in groups] == [0, 1] + [0] * 8, "sample goes to the truck group (index 1)"
    assert np.allclose(groups[1].reshape(12, 2), np.stack([np.arange(1, 13), np.zeros(12)], axis=1))


def test_plan_groups_by_command_and_skips_partial_futures():
    def info(cmd, valid):
        return dict(gt_ego_fut_trajs=np.ones((6, 2)), gt_ego_fut_masks=np.array([1] * valid + [0] * (6 - valid)),
                    gt_ego_fut_cmd=np.eye(3)[cmd])
    groups = kmeans_plan.ego_futures([info(1, 6), info(1, 6), info(2, 6), info(0, 5)])
    assert [len(g) for g in groups] == [0, 2, 1], "partial futures skipped; grouped by argmax of the command"
    assert np.allclose(groups[1][0].reshape(6, 2)[-1], [6, 6]), "positions are cumulative sums"


def test_cluster_is_seeded_and_small_sets_repeat_their_samples():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(c, 0.1, size=(40, 2)) for c in ([0, 0], [5, 5], [0, 9])])
    a = kmeans_utils.cluster(pts, 3, seed=1, what="t")
    b = kmeans_utils.cluster(pts, 3, seed=1, what="t")
    assert np.array_equal(a, b), "same seed must give identical centres"
    assert np.allclose(sorted(a[:, 1]), [0, 5, 9], atol=0.1), "three blobs give three centres"
    small = kmeans_utils.cluster(np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), 5, seed=0, what="t")
    assert small.tolist() == [[1, 0], [2, 0], [1, 0], [2, 0], [1, 0]], "distinct samples repeated in order"
    pooled = kmeans_utils.cluster_groups([np.zeros((0, 2)), np.array([[1.0, 1.0]])], 2, 0, ["a", "b"], "t", "x")
    assert pooled.shape == (2, 2, 2) and np.all(pooled == 1), "an empty group falls back to the pooled samples"
    with pytest.raises(kmeans_utils.KMeansInputError, match="needs x"):
        kmeans_utils.cluster_groups([np.zeros((0, 2))], 2, 0, ["a"], "t", "x")


def test_runs_are_deterministic_with_a_seed(infos, tmp_path):
    infos_list = kmeans_utils.load_infos(infos["train_path"])
    assert np.array_equal(kmeans_plan.plan_anchors(infos_list, 5), kmeans_plan.plan_anchors(infos_list, 5))
    assert np.array_equal(kmeans_map.map_anchors(infos_list, 5), kmeans_map.map_anchors(infos_list, 5))


def test_missing_info_file_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools/kmeans/kmeans_det.py"), "--info-path",
                           str(tmp_path / "none.pkl"), "--out-dir", str(tmp_path)], capture_output=True, text=True,
                          cwd=str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "none.pkl is missing; run tools/data_converter/nuscenes_converter.py" in proc.stderr.strip().splitlines()[-1]
