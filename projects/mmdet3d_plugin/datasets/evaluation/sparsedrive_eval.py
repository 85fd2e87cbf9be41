"""The one evaluation entry point of NuScenes3DDataset: detection, tracking, map, motion and planning."""
import json
import os
import tempfile
from typing import Dict, Mapping, Optional, Sequence

from mmcv.utils import print_log

from .detection.nusc_eval import detection_config, dump_json, evaluate_detection, evaluate_tracking
from .detection.nusc_format import default_modality, format_nusc_submission
from .map.vector_eval import evaluate_map_from_infos
from .motion.motion_eval_uniad import evaluate_motion
from .planning.planning_eval import evaluate_planning

DEFAULT_MAP_CLASSES = ("ped_crossing", "divider", "boundary")
PREFIX = "img_bbox_NuScenes"


def evaluate_sparsedrive(
    results: Sequence[Mapping],
    infos: Sequence[Mapping],
    *,
    eval_mode: Mapping,
    classes: Sequence[str],
    map_classes: Sequence[str] = DEFAULT_MAP_CLASSES,
    data_root: Optional[str] = None,
    version: str = "v1.0-trainval",
    jsonfile_prefix: Optional[str] = None,
    logger: Optional[object] = None,
    modality: Optional[Mapping] = None,
    det3d_eval_version: str = "detection_cvpr_2019",
    track3d_eval_version: str = "tracking_nips_2019",
    eval_set: Optional[str] = None,
    use_valid_flag: bool = False,
    result_name: str = "img_bbox",
) -> Dict[str, float]:
    """Evaluate per-sample model outputs the way upstream SparseDrive does; print and save the metrics.

    Args:
        results: one entry per dataset sample, in dataset order, each `{result_name: {...}}` (or the inner
            dict) with the keys of the enabled tasks (see the package docstring).
        infos: the dataset's info dicts (timestamp-sorted, `load_interval` applied), aligned with `results`.
        eval_mode: upstream's dict: `with_det`, `with_tracking`, `with_map`, `with_motion`, `with_planning`,
            `tracking_threshold`, `motion_threshhold` (sic).
        classes / map_classes: detection / map class names indexed by label.
        data_root, version: nuScenes root and version string (for the devkit's detection/tracking GT).
        jsonfile_prefix: folder for the submission JSONs, the devkit's outputs and `metrics.json`; a
            temporary folder (deleted afterwards) when None.
        eval_set: nuScenes split to score (default: `val` for trainval, `mini_val` for mini).
        use_valid_flag: GT box mask for planning collisions (upstream default False: `num_lidar_pts > 0`).
    Returns:
        flat dict of metrics (upstream key names).
    """
    if len(results) != len(infos):
        raise ValueError(f"evaluate_sparsedrive: {len(results)} results for {len(infos)} samples; run the test "
                         "loader at batch 1 per device over the whole dataset, in order.")
    outputs = [r[result_name] if result_name in r else r for r in results]
    tmp_dir = tempfile.TemporaryDirectory() if jsonfile_prefix is None else None
    out_dir = tmp_dir.name if tmp_dir is not None else jsonfile_prefix
    os.makedirs(out_dir, exist_ok=True)
    metrics: Dict[str, float] = {}
    try:
        if eval_mode.get("with_det", False):
            metrics.update(_detection_and_tracking(outputs, infos, eval_mode, classes, data_root, version,
                                                   out_dir, modality, det3d_eval_version, track3d_eval_version,
                                                   eval_set))
        if eval_mode.get("with_map", False):
            metrics.update(evaluate_map_from_infos(outputs, infos, map_classes, logger=logger))
        if eval_mode.get("with_motion", False):
            metrics.update(evaluate_motion(outputs, infos, classes, threshold=eval_mode.get("motion_threshhold", 0.2),
                                           logger=logger))
        if eval_mode.get("with_planning", False):
            metrics.update(evaluate_planning(outputs, infos, use_valid_flag=use_valid_flag, logger=logger))
        print_log(summary_text(metrics), logger=logger)
        if tmp_dir is None:
            with open(os.path.join(out_dir, "metrics.json"), "w") as f:
                json.dump(metrics, f, indent=2)
    finally:
        if tmp_dir is not None:
            tmp_dir.cleanup()
    return metrics


def _detection_and_tracking(outputs: Sequence[Mapping], infos: Sequence[Mapping], eval_mode: Mapping,
                            classes: Sequence[str], data_root: Optional[str], version: str, out_dir: str,
                            modality: Optional[Mapping], det3d_eval_version: str, track3d_eval_version: str,
                            eval_set: Optional[str]) -> Dict[str, float]:
    """Write the detection (and tracking) submission JSONs into `out_dir` and score them with the devkit."""
    if data_root is None:
        raise ValueError("evaluate_sparsedrive: eval_mode.with_det needs data_root (the nuScenes root with the "
                         "v1.0-* tables); set data.val.data_root / data.test.data_root in the config.")
    class_range = detection_config(det3d_eval_version).class_range
    meta = modality if modality is not None else default_modality()
    metrics = {}
    det_path = dump_json(format_nusc_submission(outputs, infos, classes, class_range, meta),
                         os.path.join(out_dir, "results_nusc.json"))
    metrics.update(evaluate_detection(det_path, os.path.join(out_dir, "detection"), data_root, version, classes,
                                      det3d_eval_version, eval_set, prefix=PREFIX))
    if eval_mode.get("with_tracking", False):
        submission = format_nusc_submission(outputs, infos, classes, class_range, meta, tracking=True,
                                            tracking_threshold=eval_mode.get("tracking_threshold", 0.2))
        track_path = dump_json(submission, os.path.join(out_dir, "results_nusc_tracking.json"))
        metrics.update(evaluate_tracking(track_path, os.path.join(out_dir, "tracking"), data_root, version,
                                         track3d_eval_version, eval_set, prefix=PREFIX))
    return metrics


def summary_text(metrics: Mapping[str, float]) -> str:
    """The compact summary upstream prints last (the launch scripts parse its `AMOTA:` and `L2:` lines)."""
    m, p = metrics, PREFIX
    text = "\n"
    if f"{p}/NDS" in m:
        for key in ("mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE"):
            text += f"{key}: {m[f'{p}/{key}']:.4f}\n"
        text += f"NDS: {m[f'{p}/NDS']:.4f}\n\n"
    if f"{p}/amota" in m:
        for key in ("amota", "amotp", "recall", "motar", "mota", "motp"):
            text += f"{key.upper()}: {m[f'{p}/{key}']:.4f}\n"
        text += f"IDS: {m[f'{p}/ids']}\n\n"
    if "mAP_normal" in m:
        for key in ("ped_crossing", "divider", "boundary", "mAP_normal"):
            if key in m:
                text += f"{key}= {m[key]:.4f}\n"
        text += "\n"
    if "car_EPA" in m:
        text += "Car / Ped\n"
        for short, key in (("epa", "EPA"), ("ade", "min_ade_err"), ("fde", "min_fde_err"), ("mr", "miss_rate_err")):
            text += f"{short}= {m[f'car_{key}']:.4f} / {m[f'pedestrian_{key}']:.4f}\n"
        text += "\n"
    if "L2" in m:
        text += f"obj_box_col: {m['obj_box_col'] * 100:.3f}%\n"
        text += f"L2: {m['L2']:.4f}\n\n"
    return text

