"""Motion forecasting metrics per class (car, pedestrian): EPA, minADE, minFDE, miss rate (UniAD protocol)."""
from typing import Dict, Mapping, Optional, Sequence

from mmcv.utils import print_log

from ..common import DETECTION_CLASS_RANGE, format_table
from .motion_utils import accumulate_class, filter_by_range, motion_gt_from_infos, motion_preds_from_results

MOTION_CLASSES = ("car", "pedestrian")
MOTION_METRICS = ("EPA", "min_ade_err", "min_fde_err", "miss_rate_err")


def evaluate_motion(
    results: Sequence[Mapping],
    infos: Sequence[Mapping],
    classes: Sequence[str],
    threshold: Optional[float] = 0.2,
    class_range: Mapping[str, float] = DETECTION_CLASS_RANGE,
    logger: Optional[object] = None,
) -> Dict[str, float]:
    """Evaluate predicted trajectories of detected agents against the infos' agent futures.

    Args:
        results: per-sample model outputs (`boxes_3d`, `scores_3d`, `labels_3d`, `trajs_3d`), aligned with
            `infos`; boxes with `scores_3d` < `threshold` (upstream `motion_threshhold`) are ignored.
        infos: info dicts of the evaluated samples (the GT source).
        classes: detection class names indexed by label.
    Returns:
        `{"{car,pedestrian}_{EPA,min_ade_err,min_fde_err,miss_rate_err}": value}`; the table is printed.
    """
    gts = [filter_by_range(g, class_range, drop_empty=True) for g in motion_gt_from_infos(infos)]
    preds = [filter_by_range(p, class_range) for p in motion_preds_from_results(results, infos, classes,
                                                                                  threshold)]
    metrics = {}
    for name in MOTION_CLASSES:
        for key, value in accumulate_class(gts, preds, name).items():
            metrics[f"{name}_{key}"] = float(value)
    rows = [[name] + ["%.4f" % metrics[f"{name}_{m}"] for m in MOTION_METRICS] for name in MOTION_CLASSES]
    print_log("\n" + format_table(["class names", *MOTION_METRICS], rows), logger=logger)
    return metrics
