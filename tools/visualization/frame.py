"""What one render shows: the ground truth of a frame (from the dataset) and the model's result for it.

Results are the list ``tools/test.py`` writes (``results.pkl``): one dict per dataset sample, in dataset
order, each ``{'img_bbox': {...}}`` with the keys of the enabled heads (``boxes_3d`` ..., ``vectors`` ...,
``trajs_3d`` ..., ``planning`` ...). Everything here is numpy, LiDAR frame, metres.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np


class ResultsMismatch(ValueError):
    """The results file does not belong to the dataset it is rendered with (one-line message)."""


@dataclass
class FrameGT:
    """Ground truth and sensors of one key frame.

    boxes [A, >=7] (x, y, z, w, l, h, yaw, ...), labels [A], ids [A]; agent_futures [A, T, 2] positions;
    agent_future_masks [A, T]; ego_future [T_e, 2] positions and its mask [T_e]; command index (0 right,
    1 left, 2 straight) or None; map_lines {label: [[P, 2]]}; cameras: name -> (image path, lidar2img [4, 4]).
    """

    token: str = ""
    scene: str = ""
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 9)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    agent_futures: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2)))
    agent_future_masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    ego_future: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    ego_future_mask: np.ndarray = field(default_factory=lambda: np.zeros(0))
    command: Optional[int] = None
    map_lines: Dict[int, List[np.ndarray]] = field(default_factory=dict)
    cameras: Dict[str, tuple] = field(default_factory=dict)


@dataclass
class FramePred:
    """The model's result for one frame, sorted by nothing (thresholds are applied by the renders).

    boxes [K, >=7], scores [K], labels [K], ids [K] or None; trajs [K, M, T, 2] positions and
    traj_scores [K, M] or None (rows match the boxes); map_lines [Q, P, 2], map_scores [Q], map_labels [Q];
    plans [3, M_e, T_e, 2] positions, plan_scores [3, M_e], final_plan [T_e, 2] (each None when absent).
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 10)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ids: Optional[np.ndarray] = None
    trajs: Optional[np.ndarray] = None
    traj_scores: Optional[np.ndarray] = None
    map_lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2)))
    map_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    map_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    plans: Optional[np.ndarray] = None
    plan_scores: Optional[np.ndarray] = None
    final_plan: Optional[np.ndarray] = None


def _np(value) -> np.ndarray:
    """A tensor or array-like as a numpy array (results hold CPU tensors)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def frame_gt(data: Mapping, scene: str = "") -> FrameGT:
    """FrameGT from ``NuScenes3DDataset.get_data_info(i)`` (camera modality on)."""
    gt = FrameGT(token=str(data.get("token", "")), scene=scene)
    if "gt_bboxes_3d" in data:
        gt.boxes = _np(data["gt_bboxes_3d"]).astype(np.float64).reshape(len(data["gt_bboxes_3d"]), -1)
        gt.labels = _np(data["gt_labels_3d"]).astype(np.int64)
        gt.ids = _np(data.get("instance_inds", np.full(len(gt.labels), -1))).astype(np.int64)
    if "gt_agent_fut_trajs" in data and len(gt.boxes):
        # per-step displacements from the box centre -> positions
        steps = _np(data["gt_agent_fut_trajs"]).astype(np.float64)
        gt.agent_futures = np.cumsum(steps, axis=1) + gt.boxes[:, None, :2]
        gt.agent_future_masks = _np(data["gt_agent_fut_masks"]).astype(bool)
    if "gt_ego_fut_trajs" in data:
        gt.ego_future = np.cumsum(_np(data["gt_ego_fut_trajs"]).astype(np.float64), axis=0)
        gt.ego_future_mask = _np(data["gt_ego_fut_masks"]).astype(bool)
    if "gt_ego_fut_cmd" in data:
        gt.command = int(np.argmax(_np(data["gt_ego_fut_cmd"])))
    gt.map_lines = {int(label): [np.asarray(line, dtype=np.float64)[:, :2] for line in lines]
                    for label, lines in data.get("map_infos", {}).items()}
    names = list(data.get("cam_names", []))
    for i, (path, lidar2img) in enumerate(zip(data.get("img_filename", []), data.get("lidar2img", []))):
        name = names[i] if i < len(names) else f"CAM_{i}"
        gt.cameras[name] = (path, np.asarray(lidar2img, dtype=np.float64))
    return gt


def frame_pred(result: Mapping) -> FramePred:
    """FramePred from one entry of the results list (``{'img_bbox': {...}}`` or the inner dict)."""
    result = result.get("img_bbox", result)
    pred = FramePred()
    if "boxes_3d" in result:
        pred.boxes = _np(result["boxes_3d"]).astype(np.float64).reshape(len(result["boxes_3d"]), -1)
        pred.scores = _np(result["scores_3d"]).astype(np.float64)
        pred.labels = _np(result["labels_3d"]).astype(np.int64)
        if "instance_ids" in result:
            pred.ids = _np(result["instance_ids"]).astype(np.int64)
    if "trajs_3d" in result and len(_np(result["trajs_3d"])) == len(pred.boxes):
        pred.trajs = _np(result["trajs_3d"]).astype(np.float64)
        pred.traj_scores = _np(result["trajs_score"]).astype(np.float64)
    if "vectors" in result:
        lines = [np.asarray(v, dtype=np.float64)[:, :2] for v in result["vectors"]]
        pred.map_lines = np.stack(lines) if lines else np.zeros((0, 0, 2))
        pred.map_scores = _np(result["scores"]).astype(np.float64)
        pred.map_labels = _np(result["labels"]).astype(np.int64)
    if "planning" in result:
        pred.plans = _np(result["planning"]).astype(np.float64)
        pred.plan_scores = _np(result["planning_score"]).astype(np.float64)
        if "final_planning" in result:
            pred.final_plan = _np(result["final_planning"]).astype(np.float64)
    return pred


RESULT_KEYS = ("boxes_3d", "vectors", "trajs_3d", "planning")


def check_results(results: object, num_samples: int, source: str) -> List[Mapping]:
    """The results list if it matches a dataset of ``num_samples`` samples, else ResultsMismatch (one line)."""
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise ResultsMismatch(f"{source} holds a {type(results).__name__}, not the list of per-sample results "
                              "tools/test.py writes; pass the results.pkl of a tools/test.py run.")
    if len(results) != num_samples:
        raise ResultsMismatch(f"{source} has {len(results)} results but the dataset has {num_samples} samples; "
                              "render with the config (and data.test split) the results were computed on.")
    for i, result in enumerate(results):
        inner = result.get("img_bbox", result) if isinstance(result, Mapping) else None
        if not isinstance(inner, Mapping) or not any(key in inner for key in RESULT_KEYS):
            raise ResultsMismatch(f"{source}: entry {i} is not a SparseDrive result (no {', '.join(RESULT_KEYS)}); "
                                  "pass the raw results.pkl of tools/test.py, not a metrics or submission file.")
    return list(results)
