"""Open-loop planning metrics: L2 to the GT ego trajectory and box collision rates (SparseDrive/VAD protocol)."""
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from mmcv.utils import print_log

from ..common import format_table, lidar2global, to_numpy

EGO_LENGTH = 4.084  # metres, along the heading
EGO_WIDTH = 1.85  # metres
EGO_FORWARD_OFFSET = 0.5  # metres; the ego box centre sits ahead of the trajectory point (UniAD convention)
STATIC_DIST = 0.5  # metres; below this total displacement the heading is taken as straight ahead (+y)
FUTURE_STEPS = 6  # 0.5 s apart
STEP_NAMES = ("0.5s", "1.0s", "1.5s", "2.0s", "2.5s", "3.0s")
REPORTED_STEPS = (1, 3, 5)  # indices of 1.0 s, 2.0 s, 3.0 s


def future_boxes(infos: Sequence[Mapping], index: int, use_valid_flag: bool = False) -> List[np.ndarray]:
    """GT boxes of the next key frames in the current lidar frame, as upstream's `get_ann_info` builds them.

    For i = 1 .. sum(gt_ego_fut_masks) take `infos[index + i]` (stop at a scene change or the list end),
    keep boxes with `valid_flag` (or, upstream default, `num_lidar_pts > 0`; every category, labelled
    or not) and move centres and headings into the frame of `infos[index]`.

    Returns:
        list of up to 6 arrays [M_i, 7] `[x, y, z, l, w, h, yaw]`.
    """
    info = infos[index]
    cur_inv = np.linalg.inv(lidar2global(info))
    out = []
    for i in range(1, int(np.sum(info["gt_ego_fut_masks"])) + 1):
        if index + i >= len(infos) or infos[index + i]["scene_token"] != info["scene_token"]:
            break
        fut = infos[index + i]
        mask = fut["valid_flag"] if use_valid_flag else np.asarray(fut["num_lidar_pts"]) > 0
        boxes = np.array(fut["gt_boxes"], dtype=np.float64).reshape(-1, 7)[mask]
        transform = cur_inv @ lidar2global(fut)
        heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], axis=-1) @ transform[:2, :2].T
        boxes[:, :3] = boxes[:, :3] @ transform[:3, :3].T + transform[:3, 3]
        boxes[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
        out.append(boxes)
    return out


def trajectory_yaw(traj: np.ndarray) -> np.ndarray:
    """Heading [T] along a trajectory [T, 2] that starts after the origin.

    Step t uses the central difference (point t+1 minus point t-1, the origin before step 0), the last
    step the backward difference; if the first and last points are closer than 0.5 m every step gets
    pi/2 (lidar +y, straight ahead).
    """
    if np.linalg.norm(traj[-1] - traj[0]) < STATIC_DIST:
        return np.full(len(traj), np.pi / 2)
    padded = np.concatenate([np.zeros((1, 2)), traj], axis=0)
    delta = np.concatenate([padded[2:] - padded[:-2], padded[-1:] - padded[-2:-1]], axis=0)
    return np.arctan2(delta[:, 1], delta[:, 0])


def bev_corners(center: np.ndarray, length: np.ndarray, width: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Corners [M, 4, 2] of BEV rectangles with `length` along the heading `yaw` (all inputs [M] / [M, 2])."""
    signs = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    local = signs[None] * np.stack([length, width], axis=-1)[:, None]  # [M, 4, 2]
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    rotated = np.stack([local[..., 0] * cos - local[..., 1] * sin, local[..., 0] * sin + local[..., 1] * cos], -1)
    return rotated + center[:, None]


def rectangles_intersect(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether the rectangle `box` [4, 2] touches or overlaps each of `others` [M, 4, 2] (separating axes).

    Same answer as shapely's `Polygon.intersects` for convex quadrilaterals.
    """
    edges = np.concatenate([np.broadcast_to(box[None, [1, 2]] - box[None, [0, 1]], (len(others), 2, 2)),
                            others[:, [1, 2]] - others[:, [0, 1]]], axis=1)  # [M, 4, 2] edge directions
    axes = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)
    proj_box = np.einsum("mad,cd->mac", axes, box)  # [M, 4 axes, 4 corners]
    proj_oth = np.einsum("mad,mcd->mac", axes, others)
    separated = (proj_box.max(-1) < proj_oth.min(-1)) | (proj_oth.max(-1) < proj_box.min(-1))
    return ~separated.any(axis=-1)


def collisions(traj: np.ndarray, boxes_per_step: Sequence[np.ndarray]) -> np.ndarray:
    """Per step, whether the ego box on `traj` [T, 2] (lidar frame) hits any box of that future frame.

    Steps without a box list (the scene ended) count as collision-free.
    """
    yaw = trajectory_yaw(traj)
    center = traj + EGO_FORWARD_OFFSET * np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
    ego = bev_corners(center, np.full(len(traj), EGO_LENGTH), np.full(len(traj), EGO_WIDTH), yaw)
    out = np.zeros(len(traj), dtype=bool)
    for t, boxes in enumerate(boxes_per_step[:len(traj)]):
        if len(boxes):
            corners = bev_corners(boxes[:, :2], boxes[:, 3], boxes[:, 4], boxes[:, 6])
            out[t] = rectangles_intersect(ego[t], corners).any()
    return out


class PlanningMetric:
    """Sums of per-step L2, GT-trajectory collisions (`obj_col`) and predicted-trajectory collisions at
    steps where the GT does not collide (`obj_box_col`) over the counted samples."""

    def __init__(self, n_future: int = FUTURE_STEPS):
        self.n_future = n_future
        self.sums = {key: np.zeros(n_future) for key in ("obj_col", "obj_box_col", "L2")}
        self.total = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, boxes_per_step: Sequence[np.ndarray]) -> None:
        """Add one sample: `pred`, `gt` [T, 2] absolute positions in the lidar frame (metres)."""
        gt_col = collisions(gt, boxes_per_step)
        pred_col = collisions(pred, boxes_per_step)
        self.sums["obj_col"] += gt_col
        self.sums["obj_box_col"] += pred_col & ~gt_col
        self.sums["L2"] += np.linalg.norm(pred - gt, axis=-1)
        self.total += 1

    def compute(self) -> Dict[str, np.ndarray]:
        """Per-step means [T] (NaN when no sample was counted)."""
        if self.total == 0:
            return {key: np.full(self.n_future, np.nan) for key in self.sums}
        return {key: value / self.total for key, value in self.sums.items()}


def evaluate_planning(
    results: Sequence[Mapping],
    infos: Sequence[Mapping],
    use_valid_flag: bool = False,
    logger: Optional[object] = None,
) -> Dict[str, float]:
    """L2 and collision rates of `final_planning` over samples whose 6 future GT steps all exist.

    Args:
        results: per-sample outputs with `final_planning` [6, 2] (absolute positions, lidar frame), aligned
            with `infos` (dataset order).
        infos: info dicts in dataset order (timestamp-sorted); future boxes come from the following infos.
    Returns:
        `L2`, `obj_col`, `obj_box_col`: upstream's value, the mean at 1 s / 2 s / 3 s of the cumulative
        per-step mean (VAD convention); `{key}_{1.0s,2.0s,3.0s}` those cumulative values, and
        `{key}_{1.0s,2.0s,3.0s}_per_step` / `{key}_per_step_avg` the raw per-step values (UniAD convention).
    """
    metric = PlanningMetric()
    for index, (res, info) in enumerate(zip(results, infos)):
        mask = np.asarray(info["gt_ego_fut_masks"])
        if len(mask) < FUTURE_STEPS or not mask[:FUTURE_STEPS].all():
            continue
        gt = np.cumsum(np.asarray(info["gt_ego_fut_trajs"], dtype=np.float64), axis=0)[:FUTURE_STEPS]
        pred = to_numpy(res["final_planning"]).astype(np.float64)[:FUTURE_STEPS, :2]
        metric.update(pred, gt, future_boxes(infos, index, use_valid_flag))

    per_step = metric.compute()
    metrics, rows = {}, []
    for key, values in per_step.items():
        cumulative = np.cumsum(values) / np.arange(1, len(values) + 1)
        metrics[key] = float(np.mean(cumulative[list(REPORTED_STEPS)]))
        metrics[f"{key}_per_step_avg"] = float(np.mean(values[list(REPORTED_STEPS)]))
        for step in REPORTED_STEPS:
            metrics[f"{key}_{STEP_NAMES[step]}"] = float(cumulative[step])
            metrics[f"{key}_{STEP_NAMES[step]}_per_step"] = float(values[step])
        shown = list(cumulative) + [metrics[key]]
        rows.append([key] + [("%.3f%%" % (v * 100)) if "col" in key else ("%.4f" % v) for v in shown])
    print_log("\n" + format_table(["metrics", *STEP_NAMES, "avg"], rows), logger=logger)
    print_log(f"planning: {metric.total} of {len(infos)} samples have a complete 3 s future", logger=logger)
    return metrics
