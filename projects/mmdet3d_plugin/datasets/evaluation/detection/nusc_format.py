"""Model detections (lidar frame) -> nuScenes detection / tracking submission dicts (global frame)."""
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from ..common import lidar_boxes_to_global, to_numpy

# Attribute a class gets when its speed says nothing better (upstream's `DefaultAttribute`).
DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked",
    "pedestrian": "pedestrian.moving",
    "trailer": "vehicle.parked",
    "truck": "vehicle.parked",
    "bus": "vehicle.moving",
    "motorcycle": "cycle.without_rider",
    "construction_vehicle": "vehicle.parked",
    "bicycle": "cycle.without_rider",
    "barrier": "",
    "traffic_cone": "",
}
VEHICLES = ("car", "construction_vehicle", "bus", "truck", "trailer")
CYCLES = ("bicycle", "motorcycle")
# Classes the nuScenes tracking benchmark does not score; upstream drops them from the tracking JSON.
NOT_TRACKED = ("barrier", "traffic_cone", "construction_vehicle")
MOVING_SPEED = 0.2  # m/s


def pick_attribute(name: str, speed: float) -> str:
    """nuScenes attribute of a predicted box from its class and speed (m/s), as upstream picks it."""
    if speed > MOVING_SPEED:
        if name in VEHICLES:
            return "vehicle.moving"
        if name in CYCLES:
            return "cycle.with_rider"
        return DEFAULT_ATTRIBUTE[name]
    if name == "pedestrian":
        return "pedestrian.standing"
    if name == "bus":
        return "vehicle.stopped"
    return DEFAULT_ATTRIBUTE[name]


def select_global_boxes(
    det: Mapping,
    info: Mapping,
    classes: Sequence[str],
    class_range: Optional[Mapping[str, float]] = None,
    score_threshold: Optional[float] = None,
    threshold_key: str = "cls_scores",
) -> Dict[str, np.ndarray]:
    """Filter one sample's detections and move them to the global frame.

    Args:
        det: model output with `boxes_3d` [K, >=9] (lidar frame, decoded yaw), `scores_3d` [K],
            `labels_3d` [K], optional `cls_scores` [K] and `instance_ids` [K].
        info: the sample's info dict (poses).
        classes: class names indexed by label.
        class_range: if given, drop boxes whose ego-frame BEV radius exceeds the range of their class.
        score_threshold: if given, keep boxes whose `threshold_key` score (falling back to `scores_3d`
            when the key is absent) is >= this value.
    Returns:
        dict of per-box arrays: `center`, `ego_center`, `wlh`, `rotation`, `velocity` (see
        `lidar_boxes_to_global`), `scores` [K'], `labels` [K'], `names` [K'], `ids` [K'] or None,
        `index` [K'] (row of each kept box in the model output).
    """
    boxes = to_numpy(det["boxes_3d"]).astype(np.float64)
    scores = to_numpy(det["scores_3d"]).astype(np.float64)
    labels = to_numpy(det["labels_3d"]).astype(np.int64)
    ids = to_numpy(det["instance_ids"]).astype(np.int64) if "instance_ids" in det else None
    keep = np.ones(len(scores), dtype=bool)
    if score_threshold is not None:
        gate = to_numpy(det[threshold_key]) if threshold_key in det else scores
        keep &= gate >= score_threshold
    out = lidar_boxes_to_global(boxes[keep].reshape(-1, boxes.shape[-1]), info)
    out.update(index=np.flatnonzero(keep), scores=scores[keep], labels=labels[keep])
    out["ids"] = ids[keep] if ids is not None else None
    out["names"] = np.array([classes[label] for label in out["labels"]], dtype=object)
    if class_range is not None:
        radius = np.linalg.norm(out["ego_center"][:, :2], axis=1)
        limit = np.array([class_range[name] for name in out["names"]], dtype=np.float64)
        inside = radius <= limit
        out = {k: (v[inside] if v is not None else None) for k, v in out.items()}
    return out


def format_nusc_submission(
    results: Sequence[Mapping],
    infos: Sequence[Mapping],
    classes: Sequence[str],
    class_range: Mapping[str, float],
    modality: Mapping,
    tracking: bool = False,
    tracking_threshold: float = 0.2,
) -> dict:
    """Build the nuScenes submission for every sample (detection or tracking flavour).

    Detection keeps every box inside its class range. Tracking additionally keeps boxes whose
    `cls_scores` (score before quality re-weighting; `scores_3d` if absent) is >= `tracking_threshold`,
    drops barrier / traffic_cone / construction_vehicle, and writes `tracking_id = str(instance_id)`.

    Args:
        results: per-sample model outputs (the `img_bbox` dicts), aligned with `infos`.
        infos: info dicts, one per sample.
    Returns:
        `{"meta": modality, "results": {sample_token: [box dict, ...]}}`.
    """
    if len(results) != len(infos):
        raise ValueError(f"format_nusc_submission: {len(results)} results for {len(infos)} infos; "
                         "evaluate with one result per dataset sample, in dataset order.")
    annos = {}
    for det, info in zip(results, infos):
        sel = select_global_boxes(det, info, classes, class_range,
                                  score_threshold=tracking_threshold if tracking else None)
        if tracking and sel["ids"] is None:
            raise KeyError("format_nusc_submission: tracking needs `instance_ids` in every result; "
                           "run the model with its instance bank or set eval_mode.with_tracking=False.")
        sample = []
        for i, name in enumerate(sel["names"]):
            if tracking and name in NOT_TRACKED:
                continue
            velocity = sel["velocity"][i]
            entry = dict(
                sample_token=info["token"],
                translation=sel["center"][i].tolist(),
                size=sel["wlh"][i].tolist(),
                rotation=sel["rotation"][i].tolist(),
                velocity=velocity.tolist(),
            )
            if tracking:
                entry.update(tracking_name=name, tracking_score=float(sel["scores"][i]),
                             tracking_id=str(int(sel["ids"][i])))
            else:
                entry.update(detection_name=name, detection_score=float(sel["scores"][i]),
                             attribute_name=pick_attribute(name, float(np.hypot(*velocity))))
            sample.append(entry)
        annos[info["token"]] = sample
    return {"meta": dict(modality), "results": annos}


def default_modality() -> Dict[str, bool]:
    """The submission `meta` upstream writes when the dataset config gives no modality."""
    return dict(use_camera=False, use_lidar=True, use_radar=False, use_map=False, use_external=False)

