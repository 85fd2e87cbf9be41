"""Polyline resampling and Chamfer distances for the vector-map evaluator."""
from typing import Optional

import numpy as np
from scipy.spatial import cKDTree

INTERP_NUM = 200  # points per polyline during evaluation


def interp_fixed_num_batch(lines: np.ndarray, num_pts: int = INTERP_NUM) -> np.ndarray:
    """Resample polylines with the same vertex count to `num_pts` points at equal arc-length spacing.

    Same points as shapely's `LineString.interpolate` at `linspace(0, length, num_pts)`; zero-length
    segments are skipped and a zero-length line gives its first vertex repeated.

    Args:
        lines: vertices [M, V, 2] (metres), V >= 2.
    Returns:
        [M, num_pts, 2].
    """
    lines = np.asarray(lines, dtype=np.float64)[..., :2]
    seg = np.linalg.norm(np.diff(lines, axis=1), axis=2)  # [M, V-1]
    arc = np.concatenate([np.zeros((len(lines), 1)), np.cumsum(seg, axis=1)], axis=1)  # [M, V]
    targets = np.linspace(0.0, 1.0, num_pts)[None] * arc[:, -1:]  # [M, num_pts]
    idx = (arc[:, None, :] <= targets[:, :, None]).sum(-1) - 1
    idx = np.clip(idx, 0, lines.shape[1] - 2)
    start = np.take_along_axis(arc, idx, axis=1)
    length = np.take_along_axis(arc, idx + 1, axis=1) - start
    frac = np.clip(np.divide(targets - start, length, out=np.zeros_like(length), where=length > 0), 0, 1)
    p0 = np.take_along_axis(lines, idx[..., None], axis=1)
    p1 = np.take_along_axis(lines, idx[..., None] + 1, axis=1)
    return p0 + frac[..., None] * (p1 - p0)


def interp_fixed_num(line: np.ndarray, num_pts: int = INTERP_NUM) -> np.ndarray:
    """Resample one polyline [V, 2] -> [num_pts, 2] (see `interp_fixed_num_batch`)."""
    return interp_fixed_num_batch(np.asarray(line)[None], num_pts)[0]


def chamfer_distance_batch(pred_lines: np.ndarray, gt_lines: np.ndarray,
                           max_dist: Optional[float] = None) -> np.ndarray:
    """Symmetric Chamfer distance between every prediction and every GT polyline.

    distance(a, b) = (mean over a of the nearest b point + mean over b of the nearest a point) / 2, the same
    values as upstream's dense cdist; nearest points come from one k-d tree per line (cost M x N x P x log P
    instead of M x N x P^2).

    Args:
        pred_lines: [M, P, 2] resampled predictions.
        gt_lines: [N, P, 2] resampled ground truth.
        max_dist: if given, pairs whose bounding boxes are farther apart than this get inf without being
            computed (every point distance, hence the Chamfer distance, exceeds the box gap).
    Returns:
        [M, N] distances in metres.
    """
    num_pred, num_gt = len(pred_lines), len(gt_lines)
    pred_lines = np.asarray(pred_lines, dtype=np.float64)
    gt_lines = np.asarray(gt_lines, dtype=np.float64)
    if max_dist is None:
        near = np.ones((num_pred, num_gt), dtype=bool)
    else:
        lo_p, hi_p = pred_lines.min(axis=1)[:, None], pred_lines.max(axis=1)[:, None]  # [M, 1, 2]
        lo_g, hi_g = gt_lines.min(axis=1)[None], gt_lines.max(axis=1)[None]  # [1, N, 2]
        gap = np.maximum(0.0, np.maximum(lo_g - hi_p, lo_p - hi_g))  # [M, N, 2]
        near = np.linalg.norm(gap, axis=-1) <= max_dist
    pred_to_gt = np.full((num_pred, num_gt), np.inf)
    gt_to_pred = np.full((num_pred, num_gt), np.inf)
    for j in np.flatnonzero(near.any(axis=0)):
        rows = np.flatnonzero(near[:, j])
        dist = cKDTree(gt_lines[j]).query(pred_lines[rows].reshape(-1, 2))[0]
        pred_to_gt[rows, j] = dist.reshape(len(rows), -1).mean(axis=1)
    for i in np.flatnonzero(near.any(axis=1)):
        cols = np.flatnonzero(near[i])
        dist = cKDTree(pred_lines[i]).query(gt_lines[cols].reshape(-1, 2))[0]
        gt_to_pred[i, cols] = dist.reshape(len(cols), -1).mean(axis=1)
    return (pred_to_gt + gt_to_pred) / 2
