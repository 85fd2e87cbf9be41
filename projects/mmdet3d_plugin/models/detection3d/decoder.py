"""Post-processing of the detection head: top-k boxes per sample, decoded to sizes and yaw."""
from typing import Dict, List, Optional

import torch
from mmdet.core.bbox.builder import BBOX_CODERS
from torch import Tensor

from ...core.box3d import CNS, decode_box

__all__ = ["SparseBox3DDecoder", "decode_box"]


@BBOX_CODERS.register_module()
class SparseBox3DDecoder:
    """Keep the ``num_output`` best predictions of one decoder layer and decode them.

    Args:
        num_output: predictions kept per sample (fewer if there are fewer candidates).
        score_threshold: drop kept predictions whose class score is below this (None keeps all).
        sorted: top-k returns scores in descending order.
        reorder_cls_scores: upstream quirk (kept by default): after re-sorting by score x centerness, the
            returned ``cls_scores`` stay in the pre-sort order, so they do not line up with the boxes. True
            applies the same permutation to them.
    """

    def __init__(
        self,
        num_output: int = 300,
        score_threshold: Optional[float] = None,
        sorted: bool = True,
        reorder_cls_scores: bool = False,
    ) -> None:
        self.num_output = num_output
        self.score_threshold = score_threshold
        self.sorted = sorted
        self.reorder_cls_scores = reorder_cls_scores

    def decode(
        self,
        cls_scores: List[Tensor],
        box_preds: List[Tensor],
        instance_id: Optional[Tensor] = None,
        quality: Optional[List[Optional[Tensor]]] = None,
        output_idx: int = -1,
    ) -> List[Dict[str, Tensor]]:
        """Select and decode predictions.

        Args:
            cls_scores: per decoder layer [B, A, num_cls] logits.
            box_preds: per decoder layer [B, A, 11] states.
            instance_id: [B, A] track ids; when given each instance competes once, with its best class.
            quality: per decoder layer [B, A, 2] logits or None; the score is multiplied by sigmoid(centerness).
            output_idx: which decoder layer to decode.
        Returns:
            per sample (on the CPU, except ``instance_ids`` which stay on the input device): ``boxes_3d``
            [K, 10] ``[x, y, z, w, l, h, yaw, vx, vy, vz]``, ``scores_3d`` [K], ``labels_3d`` [K], and with quality
            ``cls_scores`` [K] (score before the centerness factor), with ids ``instance_ids`` [K].
        """
        squeeze_cls = instance_id is not None
        scores = cls_scores[output_idx].sigmoid()
        if squeeze_cls:
            scores, cls_ids = scores.max(dim=-1)
            scores = scores.unsqueeze(dim=-1)
        boxes = box_preds[output_idx]
        bs, num_pred, num_cls = scores.shape
        # at most all candidates (upstream's topk fails when there are fewer than num_output)
        num_output = min(self.num_output, num_pred * num_cls)
        scores, indices = scores.flatten(start_dim=1).topk(num_output, dim=1, sorted=self.sorted)
        if not squeeze_cls:
            cls_ids = indices % num_cls
        mask = scores >= self.score_threshold if self.score_threshold is not None else None

        layer_quality = quality[output_idx] if quality is not None else None
        scores_origin = None
        if layer_quality is not None:
            centerness = torch.gather(layer_quality[..., CNS], 1, indices // num_cls)
            scores_origin = scores.clone()
            scores, order = torch.sort(scores * centerness.sigmoid(), dim=1, descending=True)
            if not squeeze_cls:
                cls_ids = torch.gather(cls_ids, 1, order)
            if mask is not None:
                mask = torch.gather(mask, 1, order)
            if self.reorder_cls_scores:
                scores_origin = torch.gather(scores_origin, 1, order)
            indices = torch.gather(indices, 1, order)

        output = []
        for i in range(bs):
            labels = cls_ids[i][indices[i]] if squeeze_cls else cls_ids[i]
            result = {
                "boxes_3d": decode_box(boxes[i, indices[i] // num_cls]),
                "scores_3d": scores[i],
                "labels_3d": labels,
            }
            if scores_origin is not None:
                result["cls_scores"] = scores_origin[i]
            if mask is not None:
                result = {key: value[mask[i]] for key, value in result.items()}
            result = {key: value.cpu() for key, value in result.items()}
            if instance_id is not None:
                ids = instance_id[i, indices[i]]
                result["instance_ids"] = ids[mask[i]] if mask is not None else ids
            output.append(result)
        return output
