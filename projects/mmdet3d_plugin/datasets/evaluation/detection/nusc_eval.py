"""Detection (mAP / NDS) and tracking (AMOTA ...) through nuscenes-devkit's own evaluators."""
import json
import os
from typing import Dict, Mapping, Optional, Sequence

# Split the devkit evaluates for each dataset version; v1.0-test has no public labels (format only).
EVAL_SET = {"v1.0-mini": "mini_val", "v1.0-trainval": "val"}
# Short names upstream reports for the mean true-positive errors.
ERR_NAME = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE",
            "attr_err": "mAAE"}
TRACKING_KEYS = ("amota", "amotp", "recall", "motar", "gt", "mota", "motp", "mt", "ml", "faf", "tp", "fp",
                 "fn", "ids", "frag", "tid", "lgd")


def eval_set_for(version: str, eval_set: Optional[str] = None) -> str:
    """The nuScenes split name to evaluate for `version`, unless `eval_set` names one explicitly."""
    if eval_set is not None:
        return eval_set
    if version not in EVAL_SET:
        raise ValueError(f"evaluation: no labelled split for nuScenes version {version!r} (known: "
                         f"{', '.join(EVAL_SET)}); use format-only for the test set or pass eval_set.")
    return EVAL_SET[version]


def detection_config(name: str = "detection_cvpr_2019"):
    """nuScenes DetectionConfig `name` with `class_names` taken from its class ranges, as upstream sets it."""
    from nuscenes.eval.detection.config import config_factory

    cfg = config_factory(name)
    cfg.class_names = list(cfg.class_range.keys())
    return cfg


def tracking_config(name: str = "tracking_nips_2019"):
    """nuScenes TrackingConfig `name` with `class_names` taken from its class ranges."""
    from nuscenes.eval.common.config import config_factory

    cfg = config_factory(name)
    cfg.class_names = list(cfg.class_range.keys())
    return cfg


def evaluate_detection(
    result_path: str,
    output_dir: str,
    data_root: str,
    version: str,
    classes: Sequence[str],
    eval_version: str = "detection_cvpr_2019",
    eval_set: Optional[str] = None,
    prefix: str = "img_bbox_NuScenes",
    verbose: bool = True,
) -> Dict[str, float]:
    """Run nuScenes `DetectionEval` on a submission JSON.

    Returns:
        `{prefix}/{class}_AP_dist_{d}`, `{prefix}/{class}_{err}` and `{prefix}/mATE..mAAE` rounded to 4
        decimals, plus unrounded `{prefix}/NDS` and `{prefix}/mAP`.
    """
    from nuscenes import NuScenes
    from nuscenes.eval.detection.evaluate import DetectionEval

    if _count_boxes(result_path) == 0:
        return _empty_detection_metrics(detection_config(eval_version), classes, prefix)
    nusc = NuScenes(version=version, dataroot=data_root, verbose=False)
    evaluator = DetectionEval(nusc, config=detection_config(eval_version), result_path=result_path,
                              eval_set=eval_set_for(version, eval_set), output_dir=output_dir,
                              verbose=verbose)
    evaluator.main(render_curves=False)
    with open(os.path.join(output_dir, "metrics_summary.json")) as f:
        summary = json.load(f)
    metrics = {}
    for name in classes:
        for dist, value in summary["label_aps"][name].items():
            metrics[f"{prefix}/{name}_AP_dist_{dist}"] = round(float(value), 4)
        for err, value in summary["label_tp_errors"][name].items():
            metrics[f"{prefix}/{name}_{err}"] = round(float(value), 4)
    for err, value in summary["tp_errors"].items():
        metrics[f"{prefix}/{ERR_NAME[err]}"] = round(float(value), 4)
    metrics[f"{prefix}/NDS"] = summary["nd_score"]
    metrics[f"{prefix}/mAP"] = summary["mean_ap"]
    return metrics


def _count_boxes(result_path: str) -> int:
    with open(result_path) as f:
        return sum(len(boxes) for boxes in json.load(f)["results"].values())


def _empty_detection_metrics(cfg, classes: Sequence[str], prefix: str) -> Dict[str, float]:
    """What the devkit scores for a submission without boxes, which it cannot evaluate itself ("Invalid box
    type: None"): AP 0, every error 1 (NaN where it never applies, as the devkit sets it), NDS 0.

    A model that diverged or never learned submits nothing above the class ranges' filter.
    """
    not_applicable = {"traffic_cone": ("attr_err", "vel_err", "orient_err"), "barrier": ("attr_err", "vel_err")}
    metrics = {}
    for name in classes:
        for dist in cfg.dist_ths:
            metrics[f"{prefix}/{name}_AP_dist_{float(dist)}"] = 0.0
        for err in ERR_NAME:
            metrics[f"{prefix}/{name}_{err}"] = float("nan") if err in not_applicable.get(name, ()) else 1.0
    metrics.update({f"{prefix}/{short}": 1.0 for short in ERR_NAME.values()})
    metrics[f"{prefix}/NDS"] = 0.0
    metrics[f"{prefix}/mAP"] = 0.0
    return metrics


def evaluate_tracking(
    result_path: str,
    output_dir: str,
    data_root: str,
    version: str,
    eval_version: str = "tracking_nips_2019",
    eval_set: Optional[str] = None,
    prefix: str = "img_bbox_NuScenes",
    verbose: bool = True,
) -> Dict[str, float]:
    """Run nuScenes `TrackingEval` on a tracking submission JSON; returns `{prefix}/{amota, amotp, ...}`."""
    from nuscenes.eval.tracking.evaluate import TrackingEval

    if _count_boxes(result_path) == 0:
        # the devkit cannot evaluate an empty submission (it raises "Invalid box type: None"); an untrained
        # model tracks nothing above the threshold: worst scores, zero counts, NaN for what needs the GT
        empty = dict.fromkeys(TRACKING_KEYS, 0.0)
        empty.update(amotp=2.0, motp=2.0, gt=float("nan"), fn=float("nan"), ml=float("nan"),
                     tid=float("nan"), lgd=float("nan"))
        return {f"{prefix}/{key}": value for key, value in empty.items()}
    evaluator = TrackingEval(config=tracking_config(eval_version), result_path=result_path,
                             eval_set=eval_set_for(version, eval_set), output_dir=output_dir,
                             verbose=verbose, nusc_version=version, nusc_dataroot=data_root)
    evaluator.main(render_curves=False)
    with open(os.path.join(output_dir, "metrics_summary.json")) as f:
        summary = json.load(f)
    return {f"{prefix}/{key}": summary[key] for key in TRACKING_KEYS}


def dump_json(obj: Mapping, path: str) -> str:
    """Write `obj` as JSON to `path` (creating its folder) and return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path
