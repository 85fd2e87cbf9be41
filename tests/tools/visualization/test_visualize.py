"""render_results over a hand-built dataset, and one-line errors for results that do not match it."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.datasets.info_factory import make_info, write_infos
from tools.visualization.frame import ResultsMismatch, check_results
from tools.visualization.video import video_info

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FRAMES = 3


def result(score: float = 0.9) -> dict:
    boxes = np.array([[1.0, 10.0, 0.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0, 0.0]], dtype=np.float32)
    return dict(img_bbox=dict(boxes_3d=boxes, scores_3d=np.array([score]), labels_3d=np.array([0]),
                              instance_ids=np.array([3]), vectors=[np.zeros((20, 2))], scores=np.array([0.1]),
                              labels=np.array([1])))


@pytest.fixture
def ann_file(tmp_path) -> str:
    infos = [make_info(str(tmp_path), scene=0, frame=i, timestamp=1_000_000 + 500_000 * i) for i in range(FRAMES)]
    return write_infos(str(tmp_path / "infos.pkl"), infos)


@pytest.fixture
def dataset(ann_file):
    from projects.mmdet3d_plugin.datasets.nuscenes_3d_dataset import NuScenes3DDataset

    return NuScenes3DDataset(ann_file=ann_file, modality=dict(use_camera=True, use_lidar=False, use_radar=False,
                                                               use_map=False, use_external=False), test_mode=True)


def test_every_frame_rendered_and_joined_into_one_video(dataset, tmp_path):
    from tools.visualization.render import RenderOptions
    from tools.visualization.visualize import render_results

    options = RenderOptions(tile_width=160, tile_height=90)
    written = render_results(dataset, [result() for _ in range(FRAMES)], str(tmp_path / "vis"), fps=2,
                             options=options)
    assert len(written["frames"]) == FRAMES and all(os.path.isfile(p) for p in written["frames"])
    assert len(written["videos"]) == 1
    info = video_info(written["videos"][0])
    assert info == dict(frames=FRAMES, width=480, height=180 + 300), info


def test_results_of_another_length_give_one_line(dataset):
    with pytest.raises(ResultsMismatch, match=r"has 2 results but the dataset has 3 samples") as err:
        check_results([result(), result()], len(dataset), "r.pkl")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad, what", [({"a": 1}, "not the list"), ([{"metrics": 1}] * FRAMES, "entry 0")])
def test_results_that_are_not_per_sample_dicts_give_one_line(bad, what):
    with pytest.raises(ResultsMismatch, match=what):
        check_results(bad, FRAMES, "r.pkl")


def test_cli_mismatch_exits_2_with_one_error_line(ann_file, tmp_path):
    config = tmp_path / "cfg.py"
    config.write_text(
        f'_base_ = ["{ROOT}/projects/configs/demo/sparsedrive_demo_stage1.py"]\n'
        f'data = dict(test=dict(ann_file="{ann_file}", data_root="{tmp_path}"))\n'
    )
    results = tmp_path / "results.pkl"
    with open(results, "wb") as f:
        pickle.dump([result()] * (FRAMES + 1), f)
    proc = subprocess.run([sys.executable, "tools/visualization/visualize.py", str(config), "--result-path",
                           str(results), "--out-dir", str(tmp_path / "vis")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "4 results but the dataset has 3 samples" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
