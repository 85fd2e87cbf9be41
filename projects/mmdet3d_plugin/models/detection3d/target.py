"""Training targets of the detection head: Hungarian matching of boxes, and denoising (noisy GT) anchors.

Symbols: B batch, A predictions, M ground-truth boxes, D = 10 regression dims
``[x, y, z, log w, log l, log h, sin yaw, cos yaw, vx, vy]``.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.core.bbox.builder import BBOX_SAMPLERS
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ...core.box3d import encode_box
from ..base_target import BaseTargetWithDenoising

__all__ = ["SparseBox3DTarget"]

#: class label of a negative denoising anchor (no object); padding GT uses -1
NEG_DN_LABEL = -3


@BBOX_SAMPLERS.register_module()
class SparseBox3DTarget(BaseTargetWithDenoising):
    """One-to-one assignment of predictions to GT boxes by a focal classification cost plus a weighted L1 box cost.

    Args:
        cls_weight: scale of the classification cost.
        alpha: focal-cost alpha.
        gamma: focal-cost gamma.
        eps: added inside the logs of the focal cost.
        box_weight: scale of the box cost.
        reg_weights: [D] per-dim weights of the box cost (default centre, size and yaw 1, velocity 0).
        cls_wise_reg_weights: {class: [D]} per-dim GT weights replacing the default for that class.
        num_dn_groups: groups of noisy GT anchors (0 disables denoising).
        dn_noise_scale: noise scale, scalar or [D].
        max_dn_gt: at most this many GT boxes per sample get noisy copies.
        add_neg_dn: also add a negative (far-off) copy of every GT per group.
        num_temp_dn_groups: noisy groups cached for the next frame.
    """

    def __init__(
        self,
        cls_weight: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2,
        eps: float = 1e-12,
        box_weight: float = 0.25,
        reg_weights: Optional[Sequence[float]] = None,
        cls_wise_reg_weights: Optional[Dict[int, Sequence[float]]] = None,
        num_dn_groups: int = 0,
        dn_noise_scale: Union[float, Sequence[float]] = 0.5,
        max_dn_gt: int = 32,
        add_neg_dn: bool = True,
        num_temp_dn_groups: int = 0,
    ) -> None:
        super().__init__(num_dn_groups, num_temp_dn_groups)
        self.cls_weight = cls_weight
        self.box_weight = box_weight
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.reg_weights = [1.0] * 8 + [0.0] * 2 if reg_weights is None else list(reg_weights)
        self.cls_wise_reg_weights = cls_wise_reg_weights
        self.dn_noise_scale = dn_noise_scale
        self.max_dn_gt = max_dn_gt
        self.add_neg_dn = add_neg_dn
        self.indices: List[List[Optional[Tensor]]] = []

    @staticmethod
    def encode_reg_target(box_target: List[Tensor], device: Optional[torch.device] = None) -> List[Tensor]:
        """Per sample, GT boxes [M, 9] ``[x, y, z, w, l, h, yaw, vx, vy]`` -> encoded [M, 10].

        All samples are encoded in one pass and moved to ``device`` in one copy, then split back by their
        counts (samples without GT give [0, 10]).
        """
        if len(box_target) == 0:
            return []
        counts = [len(box) for box in box_target]
        encoded = encode_box(torch.cat(box_target))
        if device is not None:
            encoded = encoded.to(device=device)
        return list(encoded.split(counts))

    def sample(
        self, cls_pred: Tensor, box_pred: Tensor, cls_target: List[Tensor], box_target: List[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Assign GT to predictions of one decoder layer.

        Args:
            cls_pred: [B, A, num_cls] logits.
            box_pred: [B, A, D] predicted states (truncated to the regression dims).
            cls_target: per sample [M] labels.
            box_target: per sample [M, 9] decoded GT boxes.
        Returns:
            class targets [B, A] (num_cls = background), box targets [B, A, D] (zeros if unmatched), regression
            weights [B, A, D] (0 if unmatched or the GT value is NaN). The assignment per sample
            ``[pred_idx, gt_idx]`` (``[None, None]`` without GT) is kept in ``self.indices`` for the motion loss.
        """
        bs, num_pred, num_cls = cls_pred.shape
        box_target = self.encode_reg_target(box_target, box_pred.device)
        instance_reg_weights = [self._gt_reg_weights(cls_target[i], box_target[i]) for i in range(bs)]
        cls_cost = self._cls_cost(cls_pred, cls_target)
        box_cost = self._box_cost(box_pred, box_target, instance_reg_weights)

        indices = []
        for i in range(bs):
            if cls_cost[i] is None or box_cost[i] is None:
                indices.append([None, None])
                continue
            cost = (cls_cost[i] + box_cost[i]).detach().cpu().numpy()
            cost = np.where(np.isneginf(cost) | np.isnan(cost), 1e8, cost)
            pred_idx, gt_idx = linear_sum_assignment(cost)
            indices.append([cls_pred.new_tensor(x, dtype=torch.int64) for x in (pred_idx, gt_idx)])

        output_cls_target = torch.full((bs, num_pred), num_cls, dtype=torch.long, device=cls_pred.device)
        output_box_target = box_pred.new_zeros(box_pred.shape)
        output_reg_weights = box_pred.new_zeros(box_pred.shape)
        for i, (pred_idx, gt_idx) in enumerate(indices):
            if pred_idx is None:
                continue
            output_cls_target[i, pred_idx] = cls_target[i].to(cls_pred.device)[gt_idx]
            output_box_target[i, pred_idx] = box_target[i][gt_idx]
            output_reg_weights[i, pred_idx] = instance_reg_weights[i][gt_idx]
        self.indices = indices
        return output_cls_target, output_box_target, output_reg_weights

    def _gt_reg_weights(self, cls_target: Tensor, box_target: Tensor) -> Tensor:
        """[M, D]: 1 where the encoded GT is finite, replaced by the class-wise vector for listed classes."""
        weights = (~box_target.isnan()).to(dtype=box_target.dtype)
        if self.cls_wise_reg_weights is not None:
            labels = cls_target.to(box_target.device)
            for cls, weight in self.cls_wise_reg_weights.items():
                weights = torch.where((labels == cls)[:, None], weights.new_tensor(weight), weights)
        return weights

    def _cls_cost(self, cls_pred: Tensor, cls_target: List[Tensor]) -> List[Optional[Tensor]]:
        """Per sample [A, M] focal cost (positive minus negative term) of each GT's class, or None without GT.

        The cost of every class is computed once for the batch, [B, A, num_cls]; each sample then takes the
        columns of its GT classes.
        """
        prob = cls_pred.sigmoid()
        neg_cost = -(1 - prob + self.eps).log() * (1 - self.alpha) * prob.pow(self.gamma)
        pos_cost = -(prob + self.eps).log() * self.alpha * (1 - prob).pow(self.gamma)
        cost = (pos_cost - neg_cost) * self.cls_weight
        return [
            None if len(labels) == 0 else cost[i][:, labels.to(cls_pred.device)]
            for i, labels in enumerate(cls_target)
        ]

    def _box_cost(
        self,
        box_pred: Tensor,
        box_target: Union[List[Tensor], Tensor],
        instance_reg_weights: Union[List[Tensor], Tensor],
    ) -> List[Optional[Tensor]]:
        """Per sample [A, M] weighted L1 distance times ``box_weight``, or None without GT."""
        reg_weights = box_pred.new_tensor(self.reg_weights)
        cost = []
        for i in range(box_pred.shape[0]):
            if len(box_target[i]) == 0:
                cost.append(None)
                continue
            diff = (box_pred[i, :, None] - box_target[i][None]).abs()
            cost.append((diff * instance_reg_weights[i][None] * reg_weights).sum(dim=-1) * self.box_weight)
        return cost

    def get_dn_anchors(
        self, cls_target: List[Tensor], box_target: List[Tensor], gt_instance_id: Optional[List[Tensor]] = None
    ) -> Optional[Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]]:
        """Noisy copies of the GT boxes, to be decoded alongside the normal anchors (training only).

        Per group and GT: a positive anchor GT + U(-1, 1) * noise and (with ``add_neg_dn``) a negative one
        GT +- U(1, 2) * noise; anchors are re-matched to GT by the box cost.

        Returns:
            None when denoising is off or there is no GT, else ``(dn_anchor [B, K, D], dn_box_target [B, K, D],
            dn_cls_target [B, K] (label, -1 padding, -3 negative), attn_mask [K, K] (True = blocked, between
            groups), valid_mask [B, K] (not padding), dn_id_target [B, K] or None)`` with K = groups x (2) x M_max.
        """
        if self.num_dn_groups <= 0:
            return None
        if self.num_temp_dn_groups <= 0:
            gt_instance_id = None
        if self.max_dn_gt > 0:
            cls_target = [x[: self.max_dn_gt] for x in cls_target]
            box_target = [x[: self.max_dn_gt] for x in box_target]
            if gt_instance_id is not None:
                gt_instance_id = [x[: self.max_dn_gt] for x in gt_instance_id]
        max_gt = max(len(x) for x in cls_target)
        if max_gt == 0:
            return None

        cls_target = torch.stack([F.pad(x, (0, max_gt - x.shape[0]), value=-1) for x in cls_target])
        box_target = self.encode_reg_target(box_target, cls_target.device)
        box_target = torch.stack([F.pad(x, (0, 0, 0, max_gt - x.shape[0])) for x in box_target])
        box_target = torch.where(cls_target[..., None] == -1, box_target.new_tensor(0), box_target)
        if gt_instance_id is not None:
            gt_instance_id = torch.stack(
                [F.pad(x.to(cls_target.device), (0, max_gt - x.shape[0]), value=-1) for x in gt_instance_id]
            )

        bs, num_gt, state_dims = box_target.shape
        groups = self.num_dn_groups
        # rows are group-major: row g * bs + b is sample b of group g
        cls_target = cls_target.tile(groups, 1)
        box_target = box_target.tile(groups, 1, 1)
        if gt_instance_id is not None:
            gt_instance_id = gt_instance_id.tile(groups, 1)

        noise_scale = box_target.new_tensor(self.dn_noise_scale)
        dn_anchor = box_target + (torch.rand_like(box_target) * 2 - 1) * noise_scale
        if self.add_neg_dn:
            sign = torch.where(torch.rand_like(box_target) > 0.5, 1.0, -1.0)
            neg_anchor = box_target + (torch.rand_like(box_target) + 1) * sign * noise_scale
            dn_anchor = torch.cat([dn_anchor, neg_anchor], dim=1)
            num_gt *= 2

        box_cost = self._box_cost(dn_anchor, box_target, torch.ones_like(box_target))
        dn_box_target = torch.zeros_like(dn_anchor)
        dn_cls_target = cls_target.new_full((groups * bs, num_gt), NEG_DN_LABEL)
        dn_id_target = None if gt_instance_id is None else torch.full_like(dn_cls_target, -1).to(gt_instance_id)
        for i in range(dn_anchor.shape[0]):
            anchor_idx, gt_idx = linear_sum_assignment(box_cost[i].detach().cpu().numpy())
            anchor_idx = dn_anchor.new_tensor(anchor_idx, dtype=torch.int64)
            gt_idx = dn_anchor.new_tensor(gt_idx, dtype=torch.int64)
            dn_box_target[i, anchor_idx] = box_target[i, gt_idx]
            dn_cls_target[i, anchor_idx] = cls_target[i, gt_idx]
            if dn_id_target is not None:
                dn_id_target[i, anchor_idx] = gt_instance_id[i, gt_idx]

        def to_batch_major(x: Tensor) -> Tensor:
            return x.reshape(groups, bs, num_gt, *x.shape[2:]).transpose(0, 1).flatten(1, 2)

        dn_anchor = to_batch_major(dn_anchor)
        dn_box_target = to_batch_major(dn_box_target)
        dn_cls_target = to_batch_major(dn_cls_target)
        if dn_id_target is not None:
            dn_id_target = to_batch_major(dn_id_target)
        valid_mask = dn_cls_target >= 0
        if self.add_neg_dn:
            # negatives of real GT are valid too; those of padding are not
            gt_cls = to_batch_major(torch.cat([cls_target, cls_target], dim=1))
            valid_mask = valid_mask | ((gt_cls >= 0) & (dn_cls_target == NEG_DN_LABEL))
        group_id = torch.arange(groups, device=dn_anchor.device).repeat_interleave(num_gt)
        attn_mask = group_id[:, None] != group_id[None]
        return dn_anchor, dn_box_target, dn_cls_target.long(), attn_mask, valid_mask, dn_id_target

    def update_dn(
        self,
        instance_feature: Tensor,
        anchor: Tensor,
        dn_reg_target: Tensor,
        dn_cls_target: Tensor,
        valid_mask: Tensor,
        dn_id_target: Tensor,
        num_noraml_anchor: int,
        temporal_valid_mask: Optional[Tensor],
    ) -> Tuple[Tensor, ...]:
        """Replace the first ``num_temp_dn_groups`` noisy groups by the ones cached last frame.

        The cached groups keep their anchors and features; their targets are re-read from the current GT by
        instance id (label -1 when the instance is gone). Samples whose temporal mask is False keep the current
        groups. Returns ``(instance_feature, anchor, dn_reg_target, dn_cls_target, valid_mask, dn_id_target)``
        with the normal instances first.
        """
        bs, num_anchor = instance_feature.shape[:2]
        if temporal_valid_mask is None:
            self.dn_metas = None
        if self.dn_metas is None or num_noraml_anchor >= num_anchor:
            return instance_feature, anchor, dn_reg_target, dn_cls_target, valid_mask, dn_id_target

        groups = self.num_dn_groups
        num_dn = (num_anchor - num_noraml_anchor) // groups
        dn_feat = instance_feature[:, num_noraml_anchor:].reshape(bs, groups, num_dn, -1)
        dn_anchor = anchor[:, num_noraml_anchor:].reshape(bs, groups, num_dn, -1)
        current = [
            dn_feat,
            dn_anchor,
            dn_reg_target.reshape(bs, groups, num_dn, -1),
            dn_cls_target.reshape(bs, groups, num_dn),
            valid_mask.reshape(bs, groups, num_dn),
            dn_id_target.reshape(bs, groups, num_dn),
        ]
        dn_id = current[5]
        temp_dn_id = self.dn_metas["dn_id_target"]
        num_temp_groups, num_temp_dn = self.dn_metas["dn_instance_feature"].shape[1:3]
        # [B, temp groups, temp dn, dn]: which current noisy instance carries the same GT id
        match = temp_dn_id[..., None] == dn_id[:, :num_temp_groups, None]
        temp_reg_target = (match[..., None] * current[2][:, :num_temp_groups, None]).sum(dim=3)
        temp_cls_target = torch.where(
            (~match).all(dim=-1), self.dn_metas["dn_cls_target"].new_tensor(-1), self.dn_metas["dn_cls_target"]
        )
        cached = [
            self.dn_metas["dn_instance_feature"],
            self.dn_metas["dn_anchor"],
            temp_reg_target,
            temp_cls_target,
            self.dn_metas["valid_mask"],
            temp_dn_id,
        ]
        output = []
        for temp_meta, meta in zip(cached, current):
            # the number of GT may have changed since the cache: pad with zeros or cut
            if num_temp_dn < num_dn:
                pad = (0, num_dn - num_temp_dn) if temp_meta.dim() == 3 else (0, 0, 0, num_dn - num_temp_dn)
                temp_meta = F.pad(temp_meta, pad, value=0)
            else:
                temp_meta = temp_meta[:, :, :num_dn]
            mask = temporal_valid_mask.reshape(bs, 1, 1, *([1] * (meta.dim() - 3)))
            temp_meta = torch.where(mask, temp_meta, meta[:, :num_temp_groups])
            output.append(torch.cat([temp_meta, meta[:, num_temp_groups:]], dim=1).flatten(1, 2))
        output[0] = torch.cat([instance_feature[:, :num_noraml_anchor], output[0]], dim=1)
        output[1] = torch.cat([anchor[:, :num_noraml_anchor], output[1]], dim=1)
        return tuple(output)

    def cache_dn(
        self,
        dn_instance_feature: Tensor,
        dn_anchor: Tensor,
        dn_cls_target: Tensor,
        valid_mask: Tensor,
        dn_id_target: Optional[Tensor],
    ) -> None:
        """Keep ``num_temp_dn_groups`` randomly chosen noisy groups (detached) for the next frame."""
        if self.num_temp_dn_groups <= 0:
            return
        groups = self.num_dn_groups
        bs, num_dn = dn_instance_feature.shape[:2]
        per_group = num_dn // groups
        keep = (torch.randperm(groups) < self.num_temp_dn_groups).to(device=dn_anchor.device)

        def select(x: Tensor) -> Tensor:
            return x.reshape(bs, groups, per_group, *x.shape[2:])[:, keep]

        self.dn_metas = dict(
            dn_instance_feature=select(dn_instance_feature.detach()),
            dn_anchor=select(dn_anchor.detach()),
            dn_cls_target=select(dn_cls_target),
            valid_mask=select(valid_mask),
            dn_id_target=None if dn_id_target is None else select(dn_id_target),
        )
