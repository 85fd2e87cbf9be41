"""Motion-forecasting GT / prediction tables and the UniAD-style matching (minADE, minFDE, MR, EPA)."""
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..common import DETECTION_CLASS_RANGE, lidar_boxes_to_global, lidar_pose, to_numpy

# Upstream evaluates motion on coarse classes: every vehicle and cycle counts as "car".
MOTION_NAME_MAPPING = {
    "car": "car",
    "truck": "car",
    "construction_vehicle": "car",
    "bus": "car",
    "trailer": "car",
    "motorcycle": "car",
    "bicycle": "car",
    "pedestrian": "pedestrian",
    "traffic_cone": "barrier",
    "barrier": "barrier",
}
MATCH_DIST = 2.0  # metres, BEV centre distance for a detection match (strict <)
MISS_DIST = 2.0  # metres, trajectory error threshold for miss rate and EPA
MIN_RECALL = 0.1  # nuScenes detection config's min_recall
RECALL_STEPS = 101
MAX_BOXES_PER_SAMPLE = 500


def motion_gt_from_infos(infos: Sequence[Mapping]) -> List[Dict[str, object]]:
    """Per-sample motion GT: annotated boxes of the 10 detection classes with their future positions.

    Mirrors upstream's loader (nuScenes DB + PredictHelper) from the info dicts, which store the same
    future (`gt_agent_fut_trajs` per-step displacements in the lidar frame, `gt_agent_fut_masks`).

    Returns:
        per sample a dict: `center` [N, 3] global, `ego_dist` [N] BEV distance to the ego (metres), `names`
        [N] motion class, `num_pts` [N] lidar + radar points, `trajs` list of [T_i, 2] absolute future
        positions in the lidar frame (T_i = valid future steps, may be 0).
    """
    out = []
    for info in infos:
        names = np.asarray(info.get("gt_names", []), dtype=object)
        keep = np.array([name in MOTION_NAME_MAPPING for name in names], dtype=bool)
        if not keep.any():
            out.append(dict(center=np.zeros((0, 3)), ego_dist=np.zeros(0), num_pts=np.zeros(0, dtype=np.int64),
                            trajs=[], names=np.zeros(0, dtype=object)))
            continue
        boxes = np.asarray(info["gt_boxes"], dtype=np.float64)[keep, :7]
        center = lidar_boxes_to_global(boxes, info)["center"]
        num_pts = (np.asarray(info["num_lidar_pts"]) + np.asarray(info["num_radar_pts"]))[keep]
        disp = np.asarray(info["gt_agent_fut_trajs"], dtype=np.float64)[keep]
        valid = np.asarray(info["gt_agent_fut_masks"])[keep].sum(axis=1).astype(int)
        positions = boxes[:, None, :2] + np.cumsum(disp, axis=1)
        out.append(dict(center=center, ego_dist=np.linalg.norm((center - lidar_pose(info)[3])[:, :2], axis=1),
                        num_pts=num_pts, trajs=[positions[i, :valid[i]] for i in range(len(boxes))],
                        names=np.array([MOTION_NAME_MAPPING[n] for n in names[keep]], dtype=object)))
    return out


def motion_preds_from_results(
    results: Sequence[Mapping],
    infos: Sequence[Mapping],
    classes: Sequence[str],
    threshold: Optional[float] = 0.2,
) -> List[Dict[str, np.ndarray]]:
    """Per-sample motion predictions: boxes with `scores_3d` >= threshold and their 6-mode trajectories.

    Args:
        results: model outputs with `boxes_3d`, `scores_3d`, `labels_3d` and `trajs_3d` [K, M, T, 2]
            (absolute future positions, lidar frame), aligned with `infos`.
    Returns:
        per sample: `center` [K', 3] global, `ego_dist` [K'], `names` [K'] motion class, `scores` [K'],
        `trajs` [K', M, T, 2].
    """
    out = []
    for det, info in zip(results, infos):
        boxes = to_numpy(det["boxes_3d"]).astype(np.float64)
        scores = to_numpy(det["scores_3d"]).astype(np.float64)
        labels = to_numpy(det["labels_3d"]).astype(np.int64)
        trajs = to_numpy(det["trajs_3d"]).astype(np.float64)
        keep = np.ones(len(scores), dtype=bool) if threshold is None else scores >= threshold
        if keep.sum() > MAX_BOXES_PER_SAMPLE:
            raise ValueError(f"motion eval: {int(keep.sum())} boxes above motion_threshhold in sample "
                             f"{info['token']}; nuScenes allows at most {MAX_BOXES_PER_SAMPLE} per sample.")
        glob = lidar_boxes_to_global(boxes[keep].reshape(-1, boxes.shape[-1]), info)
        ego_dist = np.linalg.norm((glob["center"] - lidar_pose(info)[3])[:, :2], axis=1)
        out.append(dict(center=glob["center"], ego_dist=ego_dist, scores=scores[keep], trajs=trajs[keep],
                        names=np.array([MOTION_NAME_MAPPING[classes[label]] for label in labels[keep]],
                                       dtype=object)))
    return out


def filter_by_range(sample: Mapping, class_range: Mapping[str, float] = DETECTION_CLASS_RANGE,
                    drop_empty: bool = False) -> Dict[str, object]:
    """nuScenes `filter_eval_boxes` on motion classes: keep boxes closer than their class range (strict),
    and with `drop_empty` drop GT boxes with zero lidar + radar points. The bike-rack rule never applies
    here because bicycles and motorcycles are already renamed to "car"."""
    keep = sample["ego_dist"] < np.array([class_range[n] for n in sample["names"]], dtype=np.float64)
    if drop_empty:
        keep &= sample["num_pts"] != 0
    idx = np.flatnonzero(keep)
    return {k: ([v[i] for i in idx] if isinstance(v, list) else v[idx]) for k, v in sample.items()}


def prediction_metrics(gt_traj: np.ndarray, pred_trajs: np.ndarray) -> np.ndarray:
    """(minADE, minFDE, miss) of one matched pair over the GT's valid steps; zeros if the GT has no future.

    Args:
        gt_traj: [T, 2]; pred_trajs: [M, >=T, 2] (same frame).
    """
    steps = len(gt_traj)
    if steps == 0:
        return np.zeros(3)
    dist = np.linalg.norm(pred_trajs[:, :steps] - gt_traj[None], axis=-1)  # [M, T]
    return np.array([dist.mean(axis=1).min(), dist[:, -1].min(), float(dist.max(axis=1).min() > MISS_DIST)])


def final_step_error(gt_traj: np.ndarray, pred_trajs: np.ndarray, final_step: int = 12) -> float:
    """Best-mode error at the GT's last valid step (capped at `final_step`); inf if the GT has no future."""
    if len(gt_traj) == 0:
        return np.inf
    step = min(len(gt_traj), final_step) - 1
    return float(np.linalg.norm(pred_trajs[:, step] - gt_traj[step][None], axis=-1).min())


def cummean(values: np.ndarray) -> np.ndarray:
    """Running mean along the array."""
    return np.cumsum(values, dtype=np.float64) / np.arange(1, len(values) + 1)


def tp_metric(curve: np.ndarray, confidence: np.ndarray, min_recall: float = MIN_RECALL) -> float:
    """nuScenes `calc_tp`: mean of a recall-interpolated curve from min_recall to the max achieved recall.

    Args:
        curve, confidence: [101] on the recall grid; the max achieved recall is the last non-zero confidence.
    Returns:
        the mean, or 1.0 when the max recall is below `min_recall`.
    """
    first = round(100 * min_recall) + 1
    nonzero = np.flatnonzero(confidence)
    last = nonzero[-1] if len(nonzero) else 0
    if last < first:
        return 1.0
    return float(np.mean(curve[first:last + 1]))


def accumulate_class(gts: Sequence[Mapping], preds: Sequence[Mapping], class_name: str) -> Dict[str, float]:
    """Match one motion class over the split and compute its EPA, minADE, minFDE and miss rate.

    Detection matching is nuScenes' greedy one (descending score; ties: later prediction first): each
    prediction takes its nearest still-free GT of the class in its sample, a TP when closer than 2 m.
    EPA re-runs the greedy pass where a hit also needs the best-mode final-step error < 2 m:
    EPA = (hits - 0.5 * detection FPs) / num GT.

    Args:
        gts, preds: per-sample tables after `filter_by_range`, aligned.
    Returns:
        `{"EPA", "min_ade_err", "min_fde_err", "miss_rate_err"}`; a class without GT gives EPA 0 and errors 1
        (upstream crashes there), a class without any match gives errors 1.
    """
    npos = sum(int(np.sum(g["names"] == class_name)) for g in gts)
    scores, sample_of, row_of = [], [], []
    for s, p in enumerate(preds):
        rows = np.flatnonzero(p["names"] == class_name)
        scores.append(p["scores"][rows])
        sample_of.append(np.full(len(rows), s))
        row_of.append(rows)
    scores, sample_of, row_of = (np.concatenate(x) if x else np.zeros(0) for x in (scores, sample_of, row_of))
    sample_of, row_of = sample_of.astype(int), row_of.astype(int)
    order = np.lexsort((np.arange(len(scores)), scores))[::-1]  # descending (score, position)
    is_tp = np.zeros(len(scores), dtype=bool)
    pair_metrics = np.zeros((len(scores), 3))
    hits = 0
    by_sample = order[np.argsort(sample_of[order], kind="stable")]
    bounds = np.flatnonzero(np.diff(sample_of[by_sample])) + 1
    for group in np.split(by_sample, bounds) if len(by_sample) else []:
        s = sample_of[group[0]]
        gt_rows = np.flatnonzero(gts[s]["names"] == class_name)
        if len(gt_rows) == 0:
            continue
        pred_rows = row_of[group]
        dist = np.linalg.norm(preds[s]["center"][pred_rows, None, :2] - gts[s]["center"][None, gt_rows, :2],
                              axis=-1)
        taken, taken_epa = np.zeros(len(gt_rows), bool), np.zeros(len(gt_rows), bool)
        for k, idx in enumerate(group):
            trajs = preds[s]["trajs"][pred_rows[k]]
            free = np.where(taken, np.inf, dist[k])
            j = int(np.argmin(free))
            if free[j] < MATCH_DIST:
                taken[j] = is_tp[idx] = True
                pair_metrics[idx] = prediction_metrics(gts[s]["trajs"][gt_rows[j]], trajs)
            free = np.where(taken_epa, np.inf, dist[k])
            j = int(np.argmin(free))
            if free[j] < MATCH_DIST and final_step_error(gts[s]["trajs"][gt_rows[j]], trajs) < MISS_DIST:
                taken_epa[j] = True
                hits += 1

    if npos == 0:
        return dict(EPA=0.0, min_ade_err=1.0, min_fde_err=1.0, miss_rate_err=1.0)
    num_fp = int(np.sum(~is_tp))
    out = dict(EPA=(hits - 0.5 * num_fp) / npos)
    if not is_tp.any():
        out.update(min_ade_err=1.0, min_fde_err=1.0, miss_rate_err=1.0)
        return out
    tp_sorted = is_tp[order]
    tp_cum = np.cumsum(tp_sorted).astype(float)
    recall = tp_cum / npos
    conf = np.interp(np.linspace(0, 1, RECALL_STEPS), recall, scores[order], right=0)
    match_conf = scores[order][tp_sorted]
    for col, key in enumerate(("min_ade_err", "min_fde_err", "miss_rate_err")):
        running = cummean(pair_metrics[order][tp_sorted, col])
        curve = np.interp(conf[::-1], match_conf[::-1], running[::-1])[::-1]
        out[key] = tp_metric(curve, conf)
    return out
