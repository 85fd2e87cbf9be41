"""Tiny hand-made info dicts and model outputs for the evaluation tests (identity poses unless given)."""
from typing import Optional, Sequence

import numpy as np

IDENTITY_QUAT = [1.0, 0.0, 0.0, 0.0]


def yaw_quat(yaw: float) -> list:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def make_info(token: str, scene: str = "scene-a", boxes: Optional[np.ndarray] = None,
              names: Sequence[str] = (), lidar_pts: Optional[Sequence[int]] = None,
              fut_trajs: Optional[np.ndarray] = None, fut_masks: Optional[np.ndarray] = None,
              ego_fut_trajs: Optional[np.ndarray] = None, ego_fut_masks: Optional[np.ndarray] = None,
              map_annos: Optional[dict] = None, ego_translation=(0.0, 0.0, 0.0),
              ego_rotation=IDENTITY_QUAT, timestamp: int = 0) -> dict:
    """One info dict with the keys the evaluators read (schema of the converter's pkl)."""
    boxes = np.zeros((0, 7)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    n = len(boxes)
    return dict(
        token=token,
        scene_token=scene,
        timestamp=timestamp,
        lidar2ego_translation=[0.0, 0.0, 0.0],
        lidar2ego_rotation=IDENTITY_QUAT,
        ego2global_translation=list(ego_translation),
        ego2global_rotation=list(ego_rotation),
        gt_boxes=boxes,
        gt_names=np.array(list(names), dtype=object).astype(str) if n else np.zeros(0, dtype="<U10"),
        gt_velocity=np.zeros((n, 2)),
        num_lidar_pts=np.array(lidar_pts if lidar_pts is not None else [5] * n, dtype=np.int64),
        num_radar_pts=np.zeros(n, dtype=np.int64),
        valid_flag=np.ones(n, dtype=bool),
        gt_agent_fut_trajs=np.zeros((n, 12, 2), np.float32) if fut_trajs is None else np.asarray(fut_trajs),
        gt_agent_fut_masks=np.zeros((n, 12), np.float32) if fut_masks is None else np.asarray(fut_masks),
        gt_ego_fut_trajs=np.zeros((6, 2), np.float32) if ego_fut_trajs is None else np.asarray(ego_fut_trajs),
        gt_ego_fut_masks=np.ones(6, np.float32) if ego_fut_masks is None else np.asarray(ego_fut_masks),
        map_annos={0: [], 1: [], 2: []} if map_annos is None else map_annos,
    )


def make_det(boxes: np.ndarray, scores: Sequence[float], labels: Sequence[int], **extra) -> dict:
    """A model output dict in upstream's format (numpy instead of tensors is accepted too)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, np.asarray(boxes).shape[-1] if len(boxes) else 10)
    out = dict(boxes_3d=boxes, scores_3d=np.asarray(scores, np.float32), labels_3d=np.asarray(labels, np.int64))
    out.update(extra)
    return out
