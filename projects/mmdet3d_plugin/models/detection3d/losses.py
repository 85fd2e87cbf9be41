"""Regression losses of the detection head: box L1, centerness and yawness (quality) terms."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.utils import build_from_cfg
from mmdet.models.builder import LOSSES
from torch import Tensor, nn

from ...core.box3d import CNS, COS_YAW, SIN_YAW, X, Y, YNS, Z

__all__ = ["SparseBox3DLoss"]


@LOSSES.register_module()
class SparseBox3DLoss(nn.Module):
    """Box regression plus the two quality targets of matched predictions.

    Args:
        loss_box: config of the box loss (e.g. mmdet ``L1Loss``), called with ``weight`` and ``avg_factor``.
        loss_centerness: config of the centerness loss (e.g. ``CrossEntropyLoss`` with sigmoid) on the logit;
            target exp(-||centre error||).
        loss_yawness: config of the yawness loss (e.g. ``GaussianFocalLoss``) on the sigmoid; target 1 when the
            predicted and target (sin, cos) point the same way.
        cls_allow_reverse: classes whose heading is ambiguous (e.g. barrier): their target yaw is flipped when it
            points away from the prediction.
        detach_centerness_target: stop gradients through the centerness target exp(-||centre error||) into the
            box prediction. DrivingSDK's NPU port does this (its BCE-with-logits has no target gradient);
            upstream does not, so the default keeps upstream's gradients.
    """

    def __init__(
        self,
        loss_box: dict,
        loss_centerness: Optional[dict] = None,
        loss_yawness: Optional[dict] = None,
        cls_allow_reverse: Optional[Sequence[int]] = None,
        detach_centerness_target: bool = False,
    ) -> None:
        super().__init__()
        self.loss_box = build_from_cfg(loss_box, LOSSES)
        self.loss_cns = None if loss_centerness is None else build_from_cfg(loss_centerness, LOSSES)
        self.loss_yns = None if loss_yawness is None else build_from_cfg(loss_yawness, LOSSES)
        self.cls_allow_reverse = cls_allow_reverse
        self.detach_centerness_target = detach_centerness_target

    def forward(
        self,
        box: Tensor,
        box_target: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[float] = None,
        prefix: str = "",
        suffix: str = "",
        quality: Optional[Tensor] = None,
        cls_target: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """Losses of K matched predictions.

        Args:
            box: [K, D] predicted states.
            box_target: [K, D] encoded targets (not modified).
            weight: [K, D] per-dim weights.
            avg_factor: normaliser (number of positives).
            prefix, suffix: wrapped around the keys ``loss_box``, ``loss_cns``, ``loss_yns``.
            quality: [K, 2] centerness and yawness logits; without it only the box loss is returned.
            cls_target: [K] labels, needed for ``cls_allow_reverse``.
        Returns:
            dict of scalar losses.
        """
        yaw_dims = [SIN_YAW, COS_YAW]
        if self.cls_allow_reverse is not None and cls_target is not None:
            reverse = F.cosine_similarity(box_target[..., yaw_dims], box[..., yaw_dims], dim=-1) < 0
            reverse = reverse & torch.isin(cls_target, cls_target.new_tensor(self.cls_allow_reverse))
            sign = torch.where(reverse, -1.0, 1.0).to(box_target.dtype)
            yaw = box_target[..., yaw_dims] * sign[..., None]
            box_target = torch.cat([box_target[..., :SIN_YAW], yaw, box_target[..., COS_YAW + 1 :]], dim=-1)

        output = {f"{prefix}loss_box{suffix}": self.loss_box(box, box_target, weight=weight, avg_factor=avg_factor)}
        if quality is not None:
            centre_error = torch.norm(box_target[..., [X, Y, Z]] - box[..., [X, Y, Z]], p=2, dim=-1)
            centerness_target = torch.exp(-centre_error)
            if self.detach_centerness_target:
                centerness_target = centerness_target.detach()
            output[f"{prefix}loss_cns{suffix}"] = self.loss_cns(
                quality[..., CNS], centerness_target, avg_factor=avg_factor
            )
            same_direction = F.cosine_similarity(box_target[..., yaw_dims], box[..., yaw_dims], dim=-1) > 0
            output[f"{prefix}loss_yns{suffix}"] = self.loss_yns(
                quality[..., YNS].sigmoid(), same_direction.float(), avg_factor=avg_factor
            )
        return output
