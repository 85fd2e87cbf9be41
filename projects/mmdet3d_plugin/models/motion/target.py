"""Training targets of the motion-planning head: best-mode selection against the ground-truth futures."""
from typing import List, Tuple

import torch
from mmdet.core.bbox.builder import BBOX_SAMPLERS
from torch import Tensor

from .motion_blocks import NUM_COMMANDS

__all__ = ["MotionTarget", "PlanningTarget", "get_cls_target", "gather_mode"]


def get_cls_target(reg_preds: Tensor, reg_target: Tensor, reg_weight: Tensor) -> Tensor:
    """Index of the mode closest to the target, by masked mean distance of the cumulative positions.

    Args:
        reg_preds: per-step displacements [B, A, M, T, 2].
        reg_target: per-step displacements [B, A, T, 2].
        reg_weight: per-step validity [B, A, T].
    Returns:
        best mode [B, A] (long).
    """
    dist = torch.linalg.norm(reg_target.cumsum(dim=-2).unsqueeze(2) - reg_preds.cumsum(dim=-2), dim=-1)
    dist = (dist * reg_weight.unsqueeze(2)).mean(dim=-1)
    return torch.argmin(dist, dim=-1)


def gather_mode(reg_preds: Tensor, mode_idx: Tensor) -> Tensor:
    """Pick one mode per instance: [B, A, M, T, 2] with [B, A] -> [B, A, T, 2]."""
    index = mode_idx[..., None, None, None].expand(-1, -1, 1, *reg_preds.shape[-2:])
    return torch.gather(reg_preds, 2, index).squeeze(2)


@BBOX_SAMPLERS.register_module()
class MotionTarget:
    """Agent future targets through the det head's Hungarian assignment (its last decoder layer)."""

    def sample(
        self,
        reg_pred: Tensor,
        gt_reg_target: List[Tensor],
        gt_reg_mask: List[Tensor],
        motion_loss_cache: dict,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            reg_pred: predicted displacements [B, A, M, T, 2].
            gt_reg_target: per sample, GT agent displacements [G_b, T, 2] (LiDAR frame, metres).
            gt_reg_mask: per sample, step validity [G_b, T].
            motion_loss_cache: ``indices``, per sample (pred_idx, target_idx) of the det assignment.
        Returns:
            cls_target [B, A] (best mode), cls_weight [B, A] (any valid step), best_reg [B, A, T, 2],
            reg_target [B, A, T, 2] (zeros where unmatched), reg_weight [B, A, T], num_pos [1].
        """
        bs, num_anchor, _, ts, d = reg_pred.shape
        reg_target = reg_pred.new_zeros((bs, num_anchor, ts, d))
        reg_weight = reg_pred.new_zeros((bs, num_anchor, ts))
        num_pos = 0
        for i, (pred_idx, target_idx) in enumerate(motion_loss_cache["indices"]):
            if len(gt_reg_target[i]) == 0:
                continue
            reg_target[i, pred_idx] = gt_reg_target[i][target_idx].to(reg_target)
            reg_weight[i, pred_idx] = gt_reg_mask[i][target_idx].to(reg_weight)
            num_pos += len(pred_idx)

        cls_target = get_cls_target(reg_pred, reg_target, reg_weight)
        cls_weight = reg_weight.any(dim=-1)
        best_reg = gather_mode(reg_pred, cls_target)
        return cls_target, cls_weight, best_reg, reg_target, reg_weight, reg_pred.new_tensor([num_pos])


@BBOX_SAMPLERS.register_module()
class PlanningTarget:
    """Ego future targets: keep the driving command's modes, then pick the best one.

    Args:
        ego_fut_ts: ego future steps T_e.
        ego_fut_mode: modes per command M_e.
    """

    def __init__(self, ego_fut_ts: int, ego_fut_mode: int) -> None:
        self.ego_fut_ts = ego_fut_ts
        self.ego_fut_mode = ego_fut_mode

    def sample(
        self,
        cls_pred: Tensor,
        reg_pred: Tensor,
        gt_reg_target: Tensor,
        gt_reg_mask: Tensor,
        data: dict,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            cls_pred: [B, 1, 3 * M_e] logits; reg_pred: [B, 1, 3 * M_e, T_e, 2] displacements.
            gt_reg_target: [B, T_e, 2] GT ego displacements; gt_reg_mask: [B, T_e].
            data: batch with ``gt_ego_fut_cmd`` [B, 3] one-hot.
        Returns:
            cls_pred [B, 1, M_e] (command's logits), cls_target [B, 1], cls_weight [B, 1],
            best_reg [B, 1, T_e, 2], reg_target [B, 1, T_e, 2], reg_weight [B, 1, T_e].
        """
        gt_reg_target = gt_reg_target.unsqueeze(1)
        gt_reg_mask = gt_reg_mask.unsqueeze(1)
        bs = reg_pred.shape[0]
        bs_indices = torch.arange(bs, device=reg_pred.device)
        cmd = data["gt_ego_fut_cmd"].argmax(dim=-1)

        cls_pred = cls_pred.reshape(bs, NUM_COMMANDS, 1, self.ego_fut_mode)[bs_indices, cmd]
        reg_pred = reg_pred.reshape(bs, NUM_COMMANDS, 1, self.ego_fut_mode, self.ego_fut_ts, 2)[bs_indices, cmd]
        cls_target = get_cls_target(reg_pred, gt_reg_target, gt_reg_mask)
        cls_weight = gt_reg_mask.any(dim=-1)
        best_reg = gather_mode(reg_pred, cls_target)
        return cls_pred, cls_target, cls_weight, best_reg, gt_reg_target, gt_reg_mask
