"""Motion metrics: greedy 2 m matching, minADE / minFDE / MR as nuScenes TP curves, EPA."""
import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.evaluation.motion.motion_eval_uniad import evaluate_motion
from projects.mmdet3d_plugin.datasets.evaluation.motion.motion_utils import tp_metric
from tests.datasets.evaluation._builders import make_info

CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
           "pedestrian", "traffic_cone")
CAR, TRUCK, BUS, PED = 0, 1, 3, 8


def scene():
    """Two vehicles with a future (12 and 6 steps) and a pedestrian without one."""
    boxes = np.array([[10, 0, 0, 4, 2, 1.5, 0], [-10, 5, 0, 5, 2, 2, 0], [0, 8, 0, 0.5, 0.5, 1.7, 0]], float)
    disp = np.zeros((3, 12, 2), np.float32)
    masks = np.zeros((3, 12), np.float32)
    disp[0, :, 0], masks[0] = 1.0, 1
    disp[1, :6, 1], masks[1, :6] = 0.5, 1
    info = make_info("s0", boxes=boxes, names=["car", "truck", "pedestrian"], fut_trajs=disp, fut_masks=masks)
    future = boxes[:, None, :2] + np.cumsum(disp, axis=1)
    return info, boxes, future


def prediction(boxes, labels, scores, trajs):
    """Model output: mode 0 follows `trajs`, the other 5 modes sit 100 m away."""
    modes = np.repeat(np.asarray(trajs, np.float32)[:, None], 6, axis=1)
    modes[:, 1:] += 100
    box10 = np.concatenate([np.asarray(boxes, np.float32), np.zeros((len(boxes), 3), np.float32)], axis=1)
    return dict(boxes_3d=box10, scores_3d=np.asarray(scores, np.float32), labels_3d=np.asarray(labels),
                trajs_3d=modes)


def test_perfect_prediction():
    info, boxes, future = scene()
    res = prediction(boxes, [CAR, TRUCK, PED], [0.9, 0.8, 0.7], future)
    m = evaluate_motion([res], [info], CLASSES)
    assert m["car_EPA"] == pytest.approx(1.0), f"both vehicles hit: {m}"
    for key in ("car_min_ade_err", "car_min_fde_err", "car_miss_rate_err", "pedestrian_min_ade_err"):
        assert m[key] == pytest.approx(0.0), f"{key} must be 0 for exact trajectories: {m}"
    assert m["pedestrian_EPA"] == 0.0, "a GT without future can never be an EPA hit (upstream rule)"


@pytest.mark.parametrize("offset, ade, miss, epa", [(0.5, 0.5, 0.0, 1.0), (3.0, 3.0, 1.0, 0.0)])
def test_shifted_trajectories(offset, ade, miss, epa):
    info, boxes, future = scene()
    res = prediction(boxes, [CAR, BUS, PED], [0.9, 0.8, 0.7], future + np.array([0.0, offset]))
    m = evaluate_motion([res], [info], CLASSES)
    assert m["car_min_ade_err"] == pytest.approx(ade), f"constant {offset} m error -> minADE {ade}: {m}"
    assert m["car_min_fde_err"] == pytest.approx(ade), f"constant {offset} m error -> minFDE {ade}: {m}"
    assert m["car_miss_rate_err"] == pytest.approx(miss), f"miss when the max error exceeds 2 m: {m}"
    assert m["car_EPA"] == pytest.approx(epa), f"EPA needs a final-step error below 2 m: {m}"


def test_errors_are_recall_interpolated_like_nuscenes():
    info, boxes, future = scene()
    shifted = future.copy()
    shifted[1] += np.array([1.0, 0.0])
    m = evaluate_motion([prediction(boxes[:2], [CAR, CAR], [0.9, 0.8], shifted[:2])], [info], CLASSES)
    # running mean [0, 0.5] at recall 0.5 / 1.0; on the 101-point grid it rises linearly (r - 0.5) from
    # recall 0.5, averaged from recall 0.11 to 1.0: sum_{k=1..50} k/100 / 90
    assert m["car_min_ade_err"] == pytest.approx(12.75 / 90), f"interpolated minADE: {m}"


def test_false_positive_lowers_epa_and_low_scores_are_ignored():
    info, boxes, future = scene()
    extra_boxes = np.concatenate([boxes[:2], [[30, 30, 0, 4, 2, 1.5, 0], [-20, 0, 0, 4, 2, 1.5, 0]]])
    extra_trajs = np.concatenate([future[:2], np.zeros((2, 12, 2))])
    res = prediction(extra_boxes, [CAR, CAR, CAR, CAR], [0.9, 0.8, 0.95, 0.1], extra_trajs)
    m = evaluate_motion([res], [info], CLASSES, threshold=0.2)
    assert m["car_EPA"] == pytest.approx((2 - 0.5) / 2), f"one FP above threshold costs half a hit: {m}"
    assert m["car_min_ade_err"] == pytest.approx(0.0), f"FPs do not enter the trajectory errors: {m}"


def test_range_and_empty_box_filters():
    boxes = np.array([[45, 0, 0, 0.5, 0.5, 1.7, 0], [5, 0, 0, 4, 2, 1.5, 0]], float)
    masks = np.ones((2, 12), np.float32)
    info = make_info("s0", boxes=boxes, names=["pedestrian", "car"], lidar_pts=[3, 0], fut_masks=masks)
    res = prediction(boxes, [PED, CAR], [0.9, 0.8], np.repeat(boxes[:, None, :2], 12, axis=1))
    m = evaluate_motion([res], [info], CLASSES)
    assert m["pedestrian_EPA"] == 0.0 and m["pedestrian_min_ade_err"] == 1.0, \
        f"pedestrian beyond 40 m is dropped on both sides -> no GT: {m}"
    assert m["car_EPA"] == 0.0 and m["car_min_ade_err"] == 1.0, f"GT car with no points is dropped: {m}"


def test_empty_predictions_and_empty_gt():
    info, _, _ = scene()
    empty = prediction(np.zeros((0, 7)), [], [], np.zeros((0, 12, 2)))
    m = evaluate_motion([empty], [info], CLASSES)
    assert m["car_EPA"] == 0.0 and m["car_min_ade_err"] == 1.0 and m["car_miss_rate_err"] == 1.0, \
        f"no prediction: EPA 0 and worst errors: {m}"
    m = evaluate_motion([empty], [make_info("s1")], CLASSES)
    assert all(np.isfinite(v) for v in m.values()), f"empty split must not crash or give NaN: {m}"


def test_tp_metric_returns_one_below_min_recall():
    conf = np.zeros(101)
    conf[:10] = 0.5
    assert tp_metric(np.zeros(101), conf) == 1.0, "max recall 0.09 < 0.1 must give 1.0"
    conf[:51] = 0.5
    curve = np.arange(101, dtype=float)
    assert tp_metric(curve, conf) == pytest.approx(np.mean(np.arange(11, 51))), "mean from index 11 to max recall"


def test_error_curves_match_nuscenes_accumulate_and_calc_tp():
    """With one-step futures at the box centres, minADE is the centre distance, i.e. nuScenes' trans_err."""
    algo = pytest.importorskip("nuscenes.eval.detection.algo")
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.common.utils import center_distance
    from nuscenes.eval.detection.data_classes import DetectionBox

    rng = np.random.default_rng(3)
    infos, results = [], []
    gt_boxes, pred_boxes = EvalBoxes(), EvalBoxes()
    for s in range(4):
        gt = np.concatenate([rng.uniform(-30, 30, (6, 2)), np.zeros((6, 1)), np.tile([4, 2, 1.5, 0], (6, 1))], 1)
        pred = gt[rng.permutation(6)[:5]].copy()
        pred[:, :2] += rng.normal(0, 0.5, (5, 2))
        pred = np.concatenate([pred, [[rng.uniform(-30, 30), 0, 0, 4, 2, 1.5, 0]]])
        scores = rng.uniform(0.3, 1, 6)
        masks = np.zeros((6, 12), np.float32)
        masks[:, 0] = 1
        infos.append(make_info(f"s{s}", boxes=gt, names=["car"] * 6, fut_masks=masks))
        results.append(prediction(pred, [CAR] * 6, scores, np.repeat(pred[:, None, :2], 12, axis=1)))
        gt_boxes.add_boxes(f"s{s}", [DetectionBox(sample_token=f"s{s}", translation=tuple(b[:3]), size=(2, 4, 1.5),
                                                  detection_name="car", num_pts=5) for b in gt])
        pred_boxes.add_boxes(f"s{s}", [DetectionBox(sample_token=f"s{s}", translation=tuple(b[:3]),
                                                    size=(2, 4, 1.5), detection_name="car",
                                                    detection_score=float(np.float32(sc)))
                                       for b, sc in zip(pred, scores)])
    md = algo.accumulate(gt_boxes, pred_boxes, "car", center_distance, 2.0)
    want = algo.calc_tp(md, 0.1, "trans_err")
    got = evaluate_motion(results, infos, CLASSES)["car_min_ade_err"]
    assert 0.05 < want < 1.0, f"the case should give a non-trivial error curve: {want}"
    assert got == pytest.approx(want, abs=1e-6), f"minADE curve {got} differs from the devkit's trans_err {want}"
