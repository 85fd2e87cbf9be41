"""End to end on a tiny synthetic nuScenes split: GT submitted as predictions scores ~1, noise scores lower.

Detection and tracking run through nuscenes-devkit's DetectionEval / TrackingEval on the devkit tables
written by tools/data_converter/synthetic_nuscenes.py; map, motion and planning use the converter's infos.
"""
import pickle

import numpy as np
import pytest

pytest.importorskip("nuscenes.eval.tracking.evaluate")

from projects.mmdet3d_plugin.datasets.evaluation import evaluate_sparsedrive  # noqa: E402
from projects.mmdet3d_plugin.datasets.evaluation.common import (DETECTION_CLASS_RANGE,  # noqa: E402
                                                                lidar_boxes_to_global)
from projects.mmdet3d_plugin.datasets.evaluation.motion.motion_utils import (filter_by_range,  # noqa: E402
                                                                             motion_gt_from_infos)

CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
           "pedestrian", "traffic_cone")
P = "img_bbox_NuScenes"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from tools.data_converter.nuscenes_converter import create_nuscenes_infos
    from tools.data_converter.synthetic_nuscenes import generate

    root = tmp_path_factory.mktemp("synthetic")
    data_root = str(root / "nuscenes")
    generate(data_root, scenes=2, samples=8, agents=16, sweeps=1, seed=0, jpeg_quality=30)
    paths = create_nuscenes_infos(data_root, str(root / "infos"), data_root, "nuscenes", version="v1.0-mini",
                                  max_sweeps=1)
    with open(paths[1], "rb") as f:
        data = pickle.load(f)
    infos = sorted(data["infos"], key=lambda e: e["timestamp"])
    return data_root, data["metadata"]["version"], infos, root


def gt_as_results(infos, shift=0.0, fresh_ids=False):
    """Model outputs built from the annotations (boxes with points, detection classes only)."""
    results = []
    for frame, info in enumerate(infos):
        keep = np.array([n in CLASSES for n in info["gt_names"]], dtype=bool)
        keep &= (info["num_lidar_pts"] + info["num_radar_pts"]) > 0
        boxes = np.concatenate([info["gt_boxes"][keep], np.nan_to_num(info["gt_velocity"][keep]),
                                np.zeros((int(keep.sum()), 1))], axis=1)
        boxes[:, 0] += shift
        ids = np.asarray(info["instance_inds"])[keep] + (1000 * frame if fresh_ids else 0)
        futures = info["gt_boxes"][keep][:, None, :2] + np.cumsum(info["gt_agent_fut_trajs"][keep], axis=1)
        results.append({"img_bbox": dict(
            boxes_3d=boxes, scores_3d=np.full(len(boxes), 0.9), cls_scores=np.full(len(boxes), 0.9),
            labels_3d=np.array([CLASSES.index(n) for n in info["gt_names"][keep]], dtype=np.int64),
            instance_ids=ids, trajs_3d=np.repeat(futures[:, None], 6, axis=1),
            vectors=[np.asarray(v) for label in (0, 1, 2) for v in info["map_annos"][label]],
            scores=np.full(sum(len(info["map_annos"][k]) for k in (0, 1, 2)), 0.8),
            labels=np.array([label for label in (0, 1, 2) for _ in info["map_annos"][label]]),
            final_planning=np.cumsum(info["gt_ego_fut_trajs"], axis=0))})
    return results


def run(synthetic, results, tag, **modes):
    data_root, version, infos, root = synthetic
    eval_mode = dict(with_det=False, with_tracking=False, with_map=False, with_motion=False, with_planning=False,
                     tracking_threshold=0.2, motion_threshhold=0.2)
    eval_mode.update(modes)
    return evaluate_sparsedrive(results, infos, eval_mode=eval_mode, classes=CLASSES, data_root=data_root,
                                version=version, jsonfile_prefix=str(root / tag))


@pytest.mark.slow
def test_ground_truth_scores_near_one(synthetic):
    infos = synthetic[2]
    m = run(synthetic, gt_as_results(infos), "gt", with_det=True, with_tracking=True, with_map=True,
            with_motion=True, with_planning=True)
    present = set()
    for info in infos:  # classes with a GT box the devkit keeps: with points, inside the class range
        radius = np.linalg.norm(lidar_boxes_to_global(info["gt_boxes"], info)["ego_center"][:, :2], axis=1)
        for name, pts, r in zip(info["gt_names"], info["num_lidar_pts"] + info["num_radar_pts"], radius):
            if name in CLASSES and pts > 0 and r < DETECTION_CLASS_RANGE[name]:
                present.add(name)
    for name in present:
        assert m[f"{P}/{name}_AP_dist_2.0"] == pytest.approx(1.0), f"{name}: GT as prediction must give AP 1"
    assert m[f"{P}/mAP"] == pytest.approx(len(present) / len(CLASSES)), \
        f"mAP = share of classes present in the split: {m[f'{P}/mAP']} vs {len(present)} classes"
    assert m[f"{P}/amota"] == pytest.approx(1.0) and m[f"{P}/ids"] == 0, f"perfect tracks: {m[f'{P}/amota']}"
    assert m["mAP_normal"] == pytest.approx(1.0), f"map GT as prediction: {m['mAP_normal']}"
    gts = [filter_by_range(g, drop_empty=True) for g in motion_gt_from_infos(infos)]
    cars = [len(t) > 0 for g in gts for t, n in zip(g["trajs"], g["names"]) if n == "car"]
    assert m["car_EPA"] == pytest.approx(np.mean(cars)), \
        f"every car with a future is hit (cars without one never are): {m['car_EPA']} vs {np.mean(cars)}"
    assert m["car_min_ade_err"] == pytest.approx(0.0, abs=1e-5), f"GT futures: minADE {m['car_min_ade_err']}"
    assert m["L2"] == pytest.approx(0.0, abs=1e-6), f"GT plan as prediction: L2 {m['L2']}"
    assert (synthetic[3] / "gt" / "metrics.json").is_file(), "metrics.json must be written"


@pytest.mark.slow
def test_noisy_predictions_score_lower(synthetic):
    infos = synthetic[2]
    perfect = run(synthetic, gt_as_results(infos), "perfect", with_det=True, with_tracking=True)
    noisy = run(synthetic, gt_as_results(infos, shift=1.0, fresh_ids=True), "noisy", with_det=True,
                with_tracking=True)
    assert noisy[f"{P}/mAP"] < perfect[f"{P}/mAP"] - 0.2, \
        f"1 m shift fails the 0.5 / 1 m thresholds: {noisy[f'{P}/mAP']} vs {perfect[f'{P}/mAP']}"
    assert noisy[f"{P}/mATE"] > perfect[f"{P}/mATE"], "translation error must grow"
    assert noisy[f"{P}/ids"] > 0 and noisy[f"{P}/amota"] < perfect[f"{P}/amota"], \
        f"new ids every frame: IDS {noisy[f'{P}/ids']}, AMOTA {noisy[f'{P}/amota']}"


@pytest.mark.slow
def test_motion_gt_from_infos_equals_upstreams_predict_helper_source(synthetic):
    """Upstream reads motion GT from the nuScenes tables with PredictHelper; the infos carry the same."""
    from nuscenes import NuScenes
    from nuscenes.eval.detection.utils import category_to_detection_name
    from nuscenes.prediction import PredictHelper, convert_local_coords_to_global
    from pyquaternion import Quaternion

    data_root, version, infos, _ = synthetic
    nusc = NuScenes(version=version, dataroot=data_root, verbose=False)
    helper = PredictHelper(nusc)
    for info, gt in zip(infos, motion_gt_from_infos(infos)):
        sample = nusc.get("sample", info["token"])
        anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
        anns = [a for a in anns if category_to_detection_name(a["category_name"]) is not None]
        assert len(anns) == len(gt["names"]), "one GT row per annotation of a detection class"
        for ann, center, traj in zip(anns, gt["center"], gt["trajs"]):
            assert np.allclose(center, ann["translation"], atol=1e-6), "global centre differs from the table"
            local = helper.get_future_for_agent(ann["instance_token"], info["token"], seconds=6, in_agent_frame=True)
            if len(local) == 0:
                assert len(traj) == 0, "no future in the tables but one in the infos"
                continue
            _, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"], selected_anntokens=[ann["token"]])
            ref = convert_local_coords_to_global(local, boxes[0].center, Quaternion(matrix=boxes[0].rotation_matrix))
            assert np.allclose(traj, ref, atol=1e-4), "future positions differ from PredictHelper's"


@pytest.mark.slow
def test_dataset_evaluate_delegates_here(synthetic, tmp_path):
    """NuScenes3DDataset.evaluate runs this package on its own (timestamp-sorted) infos."""
    from projects.mmdet3d_plugin.datasets import NuScenes3DDataset
    from projects.mmdet3d_plugin.datasets.evaluation.planning.planning_eval import future_boxes

    data_root, _, _, root = synthetic
    ann_file = str(root / "infos" / "mini" / "nuscenes_infos_val.pkl")
    dataset = NuScenes3DDataset(ann_file=ann_file, data_root=data_root, classes=CLASSES, test_mode=True,
                                work_dir=str(tmp_path))
    for index in range(len(dataset)):
        ours = future_boxes(dataset.data_infos, index)
        theirs = dataset.get_ann_info(index)["fut_boxes"]
        assert len(ours) == len(theirs) and all(np.allclose(a, b) for a, b in zip(ours, theirs)), \
            f"planning obstacles differ from the dataset's fut_boxes at index {index}"
    eval_mode = dict(with_det=True, with_tracking=True, with_map=True, with_motion=True, with_planning=True,
                     tracking_threshold=0.2, motion_threshhold=0.2)
    metrics = dataset.evaluate(gt_as_results(dataset.data_infos), eval_mode=eval_mode)
    assert metrics[f"{P}/amota"] == pytest.approx(1.0) and metrics["L2"] == pytest.approx(0.0, abs=1e-6), \
        "GT as prediction through the dataset's evaluate"
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "results_mini.pkl").is_file(), \
        "metrics.json and the raw results must land in work_dir"


@pytest.mark.slow
def test_a_submission_without_boxes_scores_as_the_devkit_scores_one_it_filters_away(synthetic, tmp_path):
    """The devkit raises on a submission with no box at all; ours returns what it gives for a far-away box."""
    import json

    from projects.mmdet3d_plugin.datasets.evaluation.detection.nusc_eval import evaluate_detection

    data_root, version, infos, _ = synthetic
    far = dict(sample_token=infos[0]["token"], translation=[1e4, 1e4, 0.0], size=[1.9, 4.6, 1.7],
               rotation=[1.0, 0.0, 0.0, 0.0], velocity=[0.0, 0.0], detection_name="car", detection_score=0.9,
               attribute_name="vehicle.parked")
    metrics = {}
    for tag, boxes in (("empty", []), ("far", [far])):
        results = {info["token"]: [] for info in infos}
        results[infos[0]["token"]] = boxes
        path = tmp_path / f"{tag}.json"
        path.write_text(json.dumps(dict(meta=dict(use_camera=True, use_lidar=False, use_radar=False,
                                                  use_map=False, use_external=False), results=results)))
        metrics[tag] = evaluate_detection(str(path), str(tmp_path / tag), data_root, version, CLASSES,
                                          verbose=False)
    assert metrics["empty"].keys() == metrics["far"].keys()
    for key, value in metrics["far"].items():
        assert metrics["empty"][key] == pytest.approx(value, nan_ok=True), key
    assert metrics["empty"][f"{P}/mAP"] == 0.0 and metrics["empty"][f"{P}/NDS"] == 0.0
