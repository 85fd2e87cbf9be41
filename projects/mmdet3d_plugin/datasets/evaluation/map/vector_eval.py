"""Online vector-map AP: Chamfer matching at 0.5 / 1.0 / 1.5 m, per-class AP and mAP (upstream protocol)."""
import os
from multiprocessing import Pool
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from mmcv.utils import print_log
from shapely.geometry import LineString

from ..common import format_table, to_numpy
from .AP import average_precision, instance_match
from .distance import INTERP_NUM, interp_fixed_num, interp_fixed_num_batch

THRESHOLDS = (0.5, 1.0, 1.5)  # Chamfer distance thresholds, metres
SIMPLIFY_TOLERANCE = 0.2  # metres; the eval pipeline's VectorizeMap(simplify=True)
N_WORKERS = min(16, os.cpu_count() or 1)  # upstream uses a 16-process pool


def gt_vectors_from_info(info: Mapping, num_classes: int) -> Dict[int, List[np.ndarray]]:
    """GT polylines of one sample as upstream's eval pipeline produces them.

    Each `map_annos` line is simplified with Douglas-Peucker (0.2 m, topology preserved) and kept as
    raw vertices [V, 2] in the lidar frame; lines with fewer than 2 vertices are skipped.
    """
    annos = info.get("map_annos", {})
    out = {}
    for label in range(num_classes):
        lines = [LineString(np.asarray(line, dtype=np.float64)) for line in annos.get(label, []) if len(line) >= 2]
        out[label] = [np.asarray(line.simplify(SIMPLIFY_TOLERANCE, preserve_topology=True).coords)[:, :2]
                      for line in lines]
    return out


def format_map_results(results: Sequence[Mapping], infos: Sequence[Mapping]) -> Dict[str, dict]:
    """Model map outputs -> `{token: {vectors: [[V, 2] list], scores: [..], labels: [..]}}`.

    Vectors with fewer than 2 points are dropped; `None` results are skipped (no prediction).
    """
    out = {}
    for pred, info in zip(results, infos):
        if pred is None:
            continue
        vectors = [to_numpy(v) for v in pred["vectors"]]
        keep = [i for i, v in enumerate(vectors) if len(v) >= 2]
        scores, labels = to_numpy(pred["scores"]), to_numpy(pred["labels"])
        out[info["token"]] = dict(vectors=[vectors[i] for i in keep], scores=scores[keep].tolist(),
                                  labels=labels[keep].astype(int).tolist())
    return out


def _resample(lines: List[np.ndarray]) -> np.ndarray:
    if not lines:
        return np.zeros((0, INTERP_NUM, 2))
    if len({len(line) for line in lines}) == 1:
        return interp_fixed_num_batch(np.stack(lines))
    return np.stack([interp_fixed_num(line) for line in lines])


def match_sample(pred_vectors: List[np.ndarray], scores: np.ndarray, gt_lines: List[np.ndarray],
                 thresholds: Sequence[float]) -> List[np.ndarray]:
    """TP/FP/score rows [M, 3] per threshold for one sample and class (resampling included)."""
    matches = instance_match(_resample(pred_vectors), scores, _resample(gt_lines), thresholds)
    return [np.stack([tp, fp, scores], axis=1) for tp, fp in matches]


def evaluate_vector_map(
    predictions: Mapping[str, Mapping],
    gts: Mapping[str, Mapping[int, List[np.ndarray]]],
    map_classes: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    logger: Optional[object] = None,
    n_workers: int = N_WORKERS,
) -> Dict[str, float]:
    """AP per map class over the split; the GT token set drives the loop.

    Args:
        predictions: `{token: {vectors, scores, labels}}` (see `format_map_results`); GT tokens without a
            prediction count as empty predictions, prediction tokens absent from `gts` are ignored.
        gts: `{token: {label: [lines [V, 2]]}}` (see `gt_vectors_from_info`).
        map_classes: class names indexed by label.
        n_workers: processes for classes with more than 81 samples (as upstream); 0 or 1 runs inline.
    Returns:
        `{class_name: AP averaged over thresholds, ..., "mAP_normal": mean over classes and thresholds}`;
        the per-class table is printed through `logger`.
    """
    num_classes = len(map_classes)
    tasks = {label: [] for label in range(num_classes)}
    num_gts = np.zeros(num_classes, dtype=np.int64)
    num_preds = np.zeros(num_classes, dtype=np.int64)
    empty = dict(vectors=[], scores=[], labels=[])
    for token, gt in gts.items():
        pred = predictions.get(token, empty)
        labels = np.asarray(pred["labels"], dtype=np.int64)
        scores = np.asarray(pred["scores"], dtype=np.float64)
        for label in range(num_classes):
            idx = np.flatnonzero(labels == label)
            gt_lines = gt.get(label, [])
            num_gts[label] += len(gt_lines)
            num_preds[label] += len(idx)
            tasks[label].append(([np.asarray(pred["vectors"][i]) for i in idx], scores[idx], gt_lines, thresholds))

    if n_workers > 1 and len(gts) > 81:
        with Pool(n_workers) as pool:
            per_class = {label: pool.starmap(match_sample, t) for label, t in tasks.items()}
    else:
        per_class = {label: [match_sample(*task) for task in t] for label, t in tasks.items()}

    eps = np.finfo(np.float32).eps
    aps = np.zeros((num_classes, len(thresholds)))
    for label in range(num_classes):
        for j, thr in enumerate(thresholds):
            parts = [sample[j] for sample in per_class[label]]
            tp_fp_score = np.concatenate(parts) if parts else np.zeros((0, 3))
            order = np.argsort(-tp_fp_score[:, 2])
            tp = np.cumsum(tp_fp_score[order, 0])
            fp = np.cumsum(tp_fp_score[order, 1])
            recalls = tp / np.maximum(num_gts[label], eps)
            precisions = tp / np.maximum(tp + fp, eps)
            aps[label, j] = average_precision(recalls, precisions)

    class_ap = aps.mean(axis=1)
    rows = [[map_classes[label], int(num_preds[label]), int(num_gts[label]),
             *[round(float(ap), 4) for ap in aps[label]], round(float(class_ap[label]), 4)]
            for label in range(num_classes)]
    header = ["category", "num_preds", "num_gts"] + [f"AP@{thr}" for thr in thresholds] + ["AP"]
    print_log("\n" + format_table(header, rows), logger=logger)
    metrics = {name: float(class_ap[label]) for label, name in enumerate(map_classes)}
    metrics["mAP_normal"] = float(aps.mean())
    print_log(f"mAP_normal = {metrics['mAP_normal']:.4f}\n", logger=logger)
    return metrics


def evaluate_map_from_infos(
    results: Sequence[Mapping],
    infos: Sequence[Mapping],
    map_classes: Sequence[str],
    logger: Optional[object] = None,
) -> Dict[str, float]:
    """Vector-map AP of per-sample model outputs (`vectors`, `scores`, `labels`) against the infos' map GT."""
    gts = {info["token"]: gt_vectors_from_info(info, len(map_classes)) for info in infos}
    return evaluate_vector_map(format_map_results(results, infos), gts, map_classes, logger=logger)
