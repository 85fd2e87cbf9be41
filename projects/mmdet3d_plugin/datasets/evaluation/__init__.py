"""Evaluation of SparseDrive outputs, computed as upstream SparseDrive computes it.

Entry point (what ``NuScenes3DDataset.evaluate`` calls)::

    evaluate_sparsedrive(results, infos, *, eval_mode, classes, map_classes=("ped_crossing", "divider",
                         "boundary"), data_root=None, version="v1.0-trainval", jsonfile_prefix=None,
                         logger=None, modality=None, det3d_eval_version="detection_cvpr_2019",
                         track3d_eval_version="tracking_nips_2019", eval_set=None, use_valid_flag=False,
                         result_name="img_bbox") -> dict[str, float]

``results`` holds one entry per dataset sample in dataset order (test loader at batch 1 per device: the
temporal instance bank needs consecutive frames), each ``{"img_bbox": {...}}`` with, per enabled task:

- det / track: ``boxes_3d`` [K, >=9] lidar frame ``[x, y, z, l, w, h, yaw, vx, vy, ...]`` (decoded yaw,
  metres, m/s), ``scores_3d`` [K] (quality re-weighted), ``labels_3d`` [K], optional ``cls_scores`` [K]
  (score before re-weighting, used for the tracking threshold), ``instance_ids`` [K] (tracking ids);
- map: ``vectors`` (list of [20, 2] lidar-frame polylines, metres), ``scores`` [V], ``labels`` [V];
- motion: ``trajs_3d`` [K, 6, 12, 2] absolute future positions (lidar frame) of the same boxes;
- planning: ``final_planning`` [6, 2] absolute ego positions (lidar frame).

``infos`` are the dataset's info dicts (``data_infos``), aligned with ``results``. ``eval_mode`` is upstream's
dict (``with_det``, ``with_tracking``, ``with_map``, ``with_motion``, ``with_planning``, ``tracking_threshold``,
``motion_threshhold``). Detection and tracking go through nuscenes-devkit's ``DetectionEval`` /
``TrackingEval`` (they need ``data_root`` with the ``v1.0-*`` tables); map, motion and planning GT come from
the infos. The summary upstream prints (``AMOTA: ...``, ``L2: ...``) goes through ``logger``, and all metrics
are written to ``<jsonfile_prefix>/metrics.json``. See README.md beside this file for the protocols.
"""
from .sparsedrive_eval import evaluate_sparsedrive, summary_text

__all__ = ["evaluate_sparsedrive", "summary_text"]
