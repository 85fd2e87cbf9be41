"""Vector-map AP: resampling, Chamfer distance, nearest-only matching, VOC AP, per-class AP."""
import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.evaluation.map.AP import average_precision, instance_match
from projects.mmdet3d_plugin.datasets.evaluation.map.distance import (chamfer_distance_batch,
                                                                       interp_fixed_num,
                                                                       interp_fixed_num_batch)
from projects.mmdet3d_plugin.datasets.evaluation.map.vector_eval import (evaluate_map_from_infos,
                                                                         evaluate_vector_map,
                                                                         gt_vectors_from_info)
from tests.datasets.evaluation._builders import make_info

CLASSES = ("ped_crossing", "divider", "boundary")


def hline(y, x0=0.0, x1=10.0, n=2):
    return np.stack([np.linspace(x0, x1, n), np.full(n, y)], axis=1)


def test_interp_places_points_at_equal_arc_length():
    got = interp_fixed_num(np.array([[0, 0], [1, 0], [1, 1]]), 5)
    want = np.array([[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1]])
    assert np.allclose(got, want), f"L-shaped line resampled wrongly: {got}"
    got = interp_fixed_num(np.array([[0, 0], [0, 0], [1, 0]]), 3)
    assert np.allclose(got, [[0, 0], [0.5, 0], [1, 0]]), f"duplicate vertex broke resampling: {got}"
    assert np.allclose(interp_fixed_num(np.array([[2, 3], [2, 3]]), 4), [[2, 3]] * 4), "zero-length line"


def test_interp_matches_shapely_interpolate():
    shapely = pytest.importorskip("shapely.geometry")
    rng = np.random.default_rng(0)
    lines = rng.uniform(-10, 10, size=(3, 7, 2))
    got = interp_fixed_num_batch(lines, 200)
    for line, pts in zip(lines, got):
        ls = shapely.LineString(line)
        want = np.array([ls.interpolate(d).coords[0] for d in np.linspace(0, ls.length, 200)])
        assert np.allclose(pts, want, atol=1e-9), "batch resampling differs from shapely's interpolate"


def test_chamfer_of_parallel_lines_is_their_offset():
    a = interp_fixed_num(hline(0.0))[None]
    b = np.stack([interp_fixed_num(hline(0.3)), interp_fixed_num(hline(0.0)[::-1])])
    dist = chamfer_distance_batch(a, b)
    assert dist.shape == (1, 2), f"wrong shape {dist.shape}"
    assert np.allclose(dist, [[0.3, 0.0]], atol=1e-6), f"expected offset 0.3 and 0 for the reversed line: {dist}"


def test_chamfer_matches_brute_force_and_prunes_far_pairs():
    rng = np.random.default_rng(1)
    pred = interp_fixed_num_batch(rng.uniform(-5, 5, size=(4, 3, 2)) + [[[0, 0]], [[0, 0]], [[0, 0]], [[40, 0]]])
    gt = interp_fixed_num_batch(rng.uniform(-5, 5, size=(3, 4, 2)))
    pair = np.linalg.norm(pred[:, None, :, None] - gt[None, :, None], axis=-1)  # [M, N, P, P]
    brute = (pair.min(axis=3).mean(axis=2) + pair.min(axis=2).mean(axis=2)) / 2
    assert np.allclose(chamfer_distance_batch(pred, gt), brute), "k-d tree Chamfer differs from brute force"
    pruned = chamfer_distance_batch(pred, gt, max_dist=1.5)
    assert np.isinf(pruned[3]).all(), "a line 30 m away from every GT box must be pruned to inf"
    kept = np.isfinite(pruned)
    assert kept[:3].any() and np.allclose(pruned[kept], brute[kept]), "pairs near each other keep their distance"
    assert (brute[~kept] > 1.5).all(), "only pairs farther than max_dist may be pruned"


def test_average_precision_area_mode_by_hand():
    ap = average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3), f"VOC area AP wrong: {ap}"


def test_instance_match_only_looks_at_nearest_gt():
    gt = np.stack([interp_fixed_num(hline(0.0)), interp_fixed_num(hline(0.6))])
    pred = np.stack([interp_fixed_num(hline(0.1)), interp_fixed_num(hline(0.2))])
    (tp, fp), = instance_match(pred, np.array([0.9, 0.8]), gt, [0.5])
    assert tp.tolist() == [1, 0] and fp.tolist() == [0, 1], \
        f"second prediction must be FP (its nearest GT is taken; no fallback), got tp={tp}, fp={fp}"


def test_instance_match_without_gt_or_predictions():
    (tp, fp), = instance_match(np.zeros((2, 200, 2)), np.ones(2), np.zeros((0, 200, 2)), [1.0])
    assert tp.tolist() == [0, 0] and fp.tolist() == [1, 1], "predictions without GT must all be FP"
    (tp, fp), = instance_match(np.zeros((0, 200, 2)), np.ones(0), np.zeros((1, 200, 2)), [1.0])
    assert tp.shape == (0,) and fp.shape == (0,), "no predictions must give empty arrays"


def _gts(lines_by_label):
    return {"t0": {label: lines_by_label.get(label, []) for label in range(3)}}


def _preds(lines, labels, scores, token="t0"):
    return {token: dict(vectors=lines, labels=labels, scores=scores)}


def test_perfect_prediction_scores_one():
    gts = _gts({0: [hline(0.0)], 1: [hline(5.0)], 2: [hline(-5.0), hline(9.0)]})
    preds = _preds([hline(0.0), hline(5.0), hline(-5.0), hline(9.0)], [0, 1, 2, 2], [0.9, 0.8, 0.7, 0.6])
    metrics = evaluate_vector_map(preds, gts, CLASSES)
    for name in CLASSES + ("mAP_normal",):
        assert metrics[name] == pytest.approx(1.0), f"{name} should be 1 for a perfect prediction: {metrics}"


def test_shifted_polyline_loses_the_tight_threshold_only():
    gts = _gts({1: [hline(0.0)]})
    metrics = evaluate_vector_map(_preds([hline(0.75)], [1], [0.9]), gts, CLASSES)
    assert metrics["divider"] == pytest.approx(2 / 3), f"0.75 m shift: AP@0.5=0, @1.0=@1.5=1 -> 2/3: {metrics}"
    assert metrics["mAP_normal"] == pytest.approx(2 / 9), f"mean over 9 (class, threshold) APs: {metrics}"
    assert metrics["ped_crossing"] == 0.0 and metrics["boundary"] == 0.0, "classes without GT score 0"


def test_false_positive_ranked_above_true_positive_halves_ap():
    gts = {"t0": {0: [hline(0.0)], 1: [], 2: []}, "t1": {0: [], 1: [], 2: []}}
    preds = {**_preds([hline(0.0)], [0], [0.9]), **_preds([hline(3.0)], [0], [0.95], token="t1")}
    assert evaluate_vector_map(preds, gts, CLASSES)["ped_crossing"] == pytest.approx(0.5), \
        "FP before the TP: precision 0.5 at recall 1"
    preds["t1"]["scores"] = [0.5]
    assert evaluate_vector_map(preds, gts, CLASSES)["ped_crossing"] == pytest.approx(1.0), \
        "FP after the TP does not lower the precision envelope at recall 1"


def test_missing_and_foreign_predictions():
    gts = _gts({0: [hline(0.0)]})
    metrics = evaluate_vector_map(_preds([hline(0.0)], [0], [0.9], token="other"), gts, CLASSES)
    assert metrics["ped_crossing"] == 0.0, "a GT sample without prediction counts as empty; foreign tokens ignored"
    assert evaluate_vector_map({}, {}, CLASSES)["mAP_normal"] == 0.0, "empty split gives 0"


def test_gt_from_infos_is_simplified_at_20cm():
    info = make_info("t0", map_annos={1: [np.array([[0, 0], [5, 0.1], [10, 0]])],
                                      0: [np.array([[0, 0], [5, 0.5], [10, 0]])], 2: []})
    gt = gt_vectors_from_info(info, 3)
    assert len(gt[1][0]) == 2, f"a 0.1 m bump is below the 0.2 m tolerance and must vanish: {gt[1][0]}"
    assert len(gt[0][0]) == 3, f"a 0.5 m bump must stay: {gt[0][0]}"
    assert gt[2] == [], "empty class stays empty"


def test_map_eval_from_model_outputs():
    infos = [make_info("t0", map_annos={0: [hline(0.0)], 1: [hline(4.0)], 2: []})]
    results = [dict(vectors=[hline(0.0, n=20).astype(np.float32), hline(4.2, n=20).astype(np.float32)],
                    scores=np.array([0.9, 0.8], np.float32), labels=np.array([0, 1]))]
    metrics = evaluate_map_from_infos(results, infos, CLASSES)
    assert metrics["ped_crossing"] == pytest.approx(1.0), f"exact polyline: {metrics}"
    assert metrics["divider"] == pytest.approx(1.0), f"0.2 m shift passes all thresholds: {metrics}"


def test_worker_pool_gives_the_inline_result():
    rng = np.random.default_rng(2)
    gts = {f"t{i}": {0: [hline(y) for y in rng.uniform(-20, 20, 2)], 1: [], 2: [hline(3.0)]} for i in range(82)}
    preds = {t: dict(vectors=[v + rng.normal(0, 0.4, v.shape) for v in g[0]] + [hline(30.0)],
                     scores=rng.uniform(0, 1, 3).tolist(), labels=[0, 0, 2]) for t, g in gts.items()}
    inline = evaluate_vector_map(preds, gts, CLASSES, n_workers=0)
    pooled = evaluate_vector_map(preds, gts, CLASSES, n_workers=2)
    assert inline == pooled, f"process pool changed the result: {inline} vs {pooled}"
    assert 0 < inline["ped_crossing"] < 1, f"noisy lines should give a partial AP: {inline}"


@pytest.mark.parametrize("num,seed", [(1, 0), (7, 1), (500, 2)])
def test_average_precision_equals_mmdet_area_mode(num, seed):
    from mmdet.core.evaluation.mean_ap import average_precision as mmdet_average_precision

    rng = np.random.default_rng(seed)
    tp = (rng.random(num) < 0.4).astype(np.float32)
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(1 - tp)
    recalls = tp_cum / (tp.sum() + 3)
    precisions = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float32).eps)
    ours = average_precision(recalls, precisions)
    assert ours == pytest.approx(float(mmdet_average_precision(recalls, precisions, mode="area")), abs=1e-6), \
        "must give mmdet's numbers (mmdet works in float32, hence the tolerance)"
