"""Post-processing of the map head: top-scoring (polyline, class) pairs per sample."""
from typing import Dict, List, Optional

import numpy as np
from mmdet.core.bbox.builder import BBOX_CODERS
from torch import Tensor

__all__ = ["SparsePoint3DDecoder"]


@BBOX_CODERS.register_module()
class SparsePoint3DDecoder:
    """Turn the map head's logits and polylines into per-sample vector results.

    Scores are sigmoid(logits) over all (instance, class) pairs; the top A pairs are kept (A = number
    of instances), so one instance may be reported under several classes.

    Args:
        coords_dim: coordinates per point.
        score_threshold: drop pairs scoring below it; None keeps all top-A pairs.
    """

    def __init__(self, coords_dim: int = 2, score_threshold: Optional[float] = None) -> None:
        self.coords_dim = coords_dim
        self.score_threshold = score_threshold

    def decode(
        self,
        cls_scores: List[Tensor],
        pts_preds: List[Tensor],
        instance_id: Optional[Tensor] = None,
        quality: Optional[List[Optional[Tensor]]] = None,
        output_idx: int = -1,
    ) -> List[Dict[str, np.ndarray]]:
        """Decode one decoder layer's outputs.

        Args:
            cls_scores: per decoder layer class logits, [B, A, num_cls].
            pts_preds: per decoder layer polylines, metres, [B, A, num_sample * coords_dim].
            instance_id, quality: accepted for the head's common call; unused for polylines.
            output_idx: which decoder layer to decode (upstream always decodes the last one, which is
                the default here).
        Returns:
            Per sample: ``vectors`` (list of [num_sample, coords_dim] arrays, metres, LiDAR frame),
            ``scores`` [K], ``labels`` [K], sorted by descending score (K = A, or fewer with a threshold).
        """
        logits = cls_scores[output_idx]
        batch, num_pred, num_cls = logits.shape
        scores, flat_idx = logits.sigmoid().flatten(1).topk(num_pred, dim=1)
        labels = flat_idx % num_cls
        instance = flat_idx // num_cls
        points = pts_preds[output_idx].reshape(batch, num_pred, -1, self.coords_dim)
        points = points.gather(1, instance[..., None, None].expand(-1, -1, *points.shape[2:]))

        scores, labels, points = (x.detach().cpu().numpy() for x in (scores, labels, points))
        results = []
        for b in range(batch):
            keep = slice(None)
            if self.score_threshold is not None:
                keep = scores[b] >= self.score_threshold
            results.append(
                {
                    "vectors": list(points[b][keep]),
                    "scores": scores[b][keep],
                    "labels": labels[b][keep],
                }
            )
        return results
