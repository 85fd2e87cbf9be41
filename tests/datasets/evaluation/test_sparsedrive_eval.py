"""The evaluation entry point: task switches, printed summary, metrics file."""
import json

import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.evaluation import evaluate_sparsedrive, summary_text
from tests.datasets.evaluation._builders import make_info

CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
           "pedestrian", "traffic_cone")
MODE = dict(with_det=False, with_tracking=False, with_map=True, with_motion=True, with_planning=True,
            tracking_threshold=0.2, motion_threshhold=0.2)


def test_summary_prints_the_lines_the_launch_scripts_parse():
    p = "img_bbox_NuScenes"
    metrics = {f"{p}/{k}": 0.12345 for k in ("mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE", "NDS", "amota",
                                             "amotp", "recall", "motar", "mota", "motp")}
    metrics.update({f"{p}/ids": 12, "ped_crossing": 0.5, "divider": 0.25, "boundary": 0.125, "mAP_normal": 0.3,
                    "obj_box_col": 0.125, "L2": 0.5})
    metrics.update({f"{c}_{k}": 0.5 for c in ("car", "pedestrian")
                    for k in ("EPA", "min_ade_err", "min_fde_err", "miss_rate_err")})
    lines = summary_text(metrics).splitlines()
    for want in ("mAP: 0.1235", "NDS: 0.1235", "AMOTA: 0.1235", "AMOTP: 0.1235", "IDS: 12", "divider= 0.2500",
                 "mAP_normal= 0.3000", "Car / Ped", "epa= 0.5000 / 0.5000", "obj_box_col: 12.500%",
                 "L2: 0.5000"):
        assert want in lines, f"summary lacks the line {want!r}: {lines}"
    assert summary_text({}) == "\n", "nothing evaluated prints nothing"


def test_entry_point_runs_map_motion_planning_and_writes_json(tmp_path):
    line = np.array([[0.0, 0.0], [0.0, 10.0]])
    boxes = np.array([[5.0, 5.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    disp = np.tile([1.0, 0.0], (1, 12, 1)).astype(np.float32)
    infos = [make_info(f"t{i}", boxes=boxes, names=["car"], fut_trajs=disp, fut_masks=np.ones((1, 12)),
                       map_annos={0: [], 1: [line], 2: []}, ego_fut_trajs=np.tile([0.0, 1.0], (6, 1)),
                       timestamp=i) for i in range(2)]
    trajs = np.repeat((boxes[:, None, :2] + np.cumsum(disp, axis=1))[:, None], 6, axis=1)
    out = dict(boxes_3d=np.concatenate([boxes, np.zeros((1, 3))], 1), scores_3d=np.array([0.9]),
               labels_3d=np.array([0]), trajs_3d=trajs, vectors=[line], scores=np.array([0.8]),
               labels=np.array([1]), final_planning=np.cumsum(np.tile([0.0, 1.0], (6, 1)), axis=0))
    metrics = evaluate_sparsedrive([{"img_bbox": out}] * 2, infos, eval_mode=MODE, classes=CLASSES,
                                   jsonfile_prefix=str(tmp_path))
    assert metrics["divider"] == pytest.approx(1.0) and metrics["car_EPA"] == pytest.approx(1.0), metrics
    assert metrics["L2"] == pytest.approx(0.0), f"the plan equals the GT: {metrics}"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved.keys() == metrics.keys(), "metrics.json must hold every returned metric"


def test_entry_point_checks_inputs():
    with pytest.raises(ValueError, match="2 results for 1 samples"):
        evaluate_sparsedrive([{}, {}], [make_info("t")], eval_mode=MODE, classes=CLASSES)
    with pytest.raises(ValueError, match="data_root"):
        evaluate_sparsedrive([{}], [make_info("t")], eval_mode=dict(with_det=True), classes=CLASSES)
