"""Per-sample TP/FP matching of polylines and VOC-style average precision."""
from typing import List, Sequence, Tuple

import numpy as np

from .distance import chamfer_distance_batch


def average_precision(recalls: np.ndarray, precisions: np.ndarray) -> float:
    """Area under the precision envelope (VOC 'area' mode): sum of recall steps x max precision to the right.

    The numbers of mmdet's ``average_precision(mode='area')`` (tested), kept here for speed: mmdet builds the
    envelope in a Python loop, 272 ms for 100k detections against 0.65 ms here, and the map evaluation calls
    it for 3 classes x 3 thresholds with about that many detections each on nuScenes val.

    Args:
        recalls, precisions: [D] along detections sorted by descending score.
    """
    mrec = np.concatenate([[0.0], recalls, [1.0]])
    mpre = np.concatenate([[0.0], precisions, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def instance_match(pred_lines: np.ndarray, scores: np.ndarray, gt_lines: np.ndarray,
                   thresholds: Sequence[float]) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Mark each predicted polyline of one sample and class as TP or FP, per Chamfer threshold.

    In descending score order each prediction looks only at its nearest GT: TP if that distance is
    <= threshold and the GT is not yet taken, else FP (no fallback to the next-nearest GT).

    Args:
        pred_lines: [M, P, 2]; scores: [M]; gt_lines: [N, P, 2].
    Returns:
        per threshold a pair (tp [M], fp [M]) of float32 0/1 arrays in the input order.
    """
    num_pred, num_gt = len(pred_lines), len(gt_lines)
    if num_gt == 0 or num_pred == 0:
        fp = np.full(num_pred, float(num_gt == 0), dtype=np.float32)
        return [(np.zeros(num_pred, dtype=np.float32), fp.copy()) for _ in thresholds]
    # pairs beyond the largest threshold can never be TPs, so their exact distance is not needed
    dist = chamfer_distance_batch(pred_lines, gt_lines, max_dist=max(thresholds))
    nearest, nearest_dist = dist.argmin(axis=1), dist.min(axis=1)
    order = np.argsort(-scores)
    out = []
    for thr in thresholds:
        candidates = order[nearest_dist[order] <= thr]
        # the first candidate (in score order) pointing at a GT takes it; later ones are duplicates
        _, first = np.unique(nearest[candidates], return_index=True)
        tp = np.zeros(num_pred, dtype=np.float32)
        tp[candidates[first]] = 1
        out.append((tp, 1 - tp))
    return out
