"""Training targets of the map head: Hungarian matching of polylines, aware of equivalent orderings."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmdet.core.bbox.assigners import BaseAssigner
from mmdet.core.bbox.builder import BBOX_ASSIGNERS, BBOX_SAMPLERS, build_assigner
from mmdet.core.bbox.match_costs import build_match_cost
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..base_target import BaseTargetWithDenoising
from .utils import LineNormalizer

__all__ = ["HungarianLinesAssigner", "SparsePoint3DTarget"]

# Non-finite costs (e.g. from NaN predictions) make linear_sum_assignment raise; they become this.
INVALID_COST = 1e8

Assignment = Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[Tensor]]


def hungarian(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching of a [A, G] cost matrix; returns (pred indices, GT indices)."""
    return linear_sum_assignment(cost)


@BBOX_ASSIGNERS.register_module()
class HungarianLinesAssigner(BaseAssigner):
    """One-to-one matching of predicted and GT polylines by a (classification + polyline) cost.

    Args:
        cost: config of the cost, e.g. ``MapQueriesCost`` with ``FocalLossCost`` and a permuting
            ``LinesL1Cost``.
    """

    def __init__(self, cost: dict) -> None:
        self.cost = build_match_cost(cost)

    @property
    def permute(self) -> bool:
        return bool(self.cost.reg_cost.permute)

    def match_cost(
        self, preds: Dict[str, Tensor], gts: Dict[str, Tensor], ignore_cls_cost: bool = False
    ) -> Tuple[Tensor, Tensor]:
        """Cost of every (prediction, GT) pair and the GT ordering that achieves it.

        Args:
            preds: ``scores`` logits [A, num_cls]; ``lines`` normalised polylines [A, D].
            gts: ``labels`` [G]; ``lines`` normalised polylines with all orderings, [G, K, D].
            ignore_cls_cost: match on the polyline cost only.
        Returns:
            (cost [A, G] with non-finite entries replaced by 1e8, best ordering [A, G] long; all zeros
            when the cost does not permute).
        """
        if self.permute:
            cost, permute_idx = self.cost(preds, gts, ignore_cls_cost)
        else:
            first_order = dict(gts, lines=gts["lines"][:, 0])
            cost = self.cost(preds, first_order, ignore_cls_cost)
            permute_idx = torch.zeros_like(cost, dtype=torch.long)
        cost = torch.where(torch.isfinite(cost), cost, cost.new_tensor(INVALID_COST))
        return cost, permute_idx

    def assign(
        self, preds: Dict[str, Tensor], gts: Dict[str, Tensor], ignore_cls_cost: bool = False
    ) -> Assignment:
        """Match one sample.

        Returns:
            (pred indices [M], GT indices [M], best ordering per pair [A, G]); (None, None, None) when
            there is no GT or no prediction.
        """
        if gts["lines"].shape[0] == 0 or preds["lines"].shape[0] == 0:
            return None, None, None
        cost, permute_idx = self.match_cost(preds, gts, ignore_cls_cost)
        pred_idx, gt_idx = hungarian(cost.detach().cpu().numpy())
        return pred_idx, gt_idx, permute_idx


@BBOX_SAMPLERS.register_module()
class SparsePoint3DTarget(BaseTargetWithDenoising):
    """Per-prediction class and polyline targets of the map head from Hungarian matching.

    Matching runs in normalised ROI coordinates; the returned polyline targets are in metres, in the
    GT ordering closest to the matched prediction. Denoising is not implemented for polylines; the
    denoising arguments are accepted so that configs stay upstream-compatible.

    Args:
        assigner: config of the ``HungarianLinesAssigner``.
        num_dn_groups, num_temp_dn_groups, dn_noise_scale, max_dn_gt, add_neg_dn: denoising settings
            (unused by the map head).
        num_cls: number of map classes; unmatched predictions get this index (background).
        num_sample: points per polyline.
        roi_size: (x, y) extent of the map ROI in metres.
    """

    def __init__(
        self,
        assigner: dict,
        num_dn_groups: int = 0,
        dn_noise_scale: float = 0.5,
        max_dn_gt: int = 32,
        add_neg_dn: bool = True,
        num_temp_dn_groups: int = 0,
        num_cls: int = 3,
        num_sample: int = 20,
        roi_size: Sequence[float] = (30, 60),
    ) -> None:
        super().__init__(num_dn_groups, num_temp_dn_groups)
        self.assigner = build_assigner(assigner)
        self.dn_noise_scale = dn_noise_scale
        self.max_dn_gt = max_dn_gt
        self.add_neg_dn = add_neg_dn
        self.num_cls = num_cls
        self.num_sample = num_sample
        self.roi_size = tuple(roi_size)
        self._normalizer = LineNormalizer(num_sample, self.roi_size)

    def normalize_line(self, line: Tensor) -> Tensor:
        """Metres -> about [0, 1] of the ROI, [..., num_sample * coords_dim]."""
        return self._normalizer(line)

    @staticmethod
    def _as_orderings(lines: Union[Tensor, np.ndarray], like: Tensor) -> Tensor:
        """GT polylines of one sample as [G, K, D] on ``like``'s device and dtype.

        Accepts [G, K, S, coords] (the pipeline's permuted output), [G, K, D] or [G, D] (one ordering).
        """
        dims = like.shape[-1]
        lines = torch.as_tensor(lines, dtype=like.dtype, device=like.device)
        if lines.numel() == 0:
            return lines.new_zeros((0, 1, dims))
        if lines.dim() == 4:
            lines = lines.flatten(2, 3)
        elif lines.dim() == 2:
            lines = lines[:, None]
        if lines.dim() != 3 or lines.shape[-1] != dims:
            raise ValueError(
                f"SparsePoint3DTarget: gt_map_pts of shape {tuple(lines.shape)} does not give {dims} "
                "coordinates per ordering; expected [G, K, num_sample, coords_dim]."
            )
        return lines

    def sample(
        self,
        cls_preds: Tensor,
        pts_preds: Tensor,
        cls_targets: List[Tensor],
        pts_targets: List[Tensor],
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Match one decoder layer's predictions to the GT of every sample.

        Args:
            cls_preds: class logits, [B, A, num_cls].
            pts_preds: polylines, metres, [B, A, D] with D = num_sample * coords_dim.
            cls_targets: per sample GT labels, [G_b] long.
            pts_targets: per sample GT polylines with every equivalent ordering, [G_b, K, num_sample, 2]
                (or [G_b, K, D]), metres.
        Returns:
            cls_target [B, A] long (num_cls for unmatched), line target [B, A, D] (metres, best
            ordering, zeros for unmatched), reg weights [B, A, D] (1 for matched rows, else 0).
        """
        batch, num_pred, num_cls = cls_preds.shape
        gt_lines = [self._as_orderings(lines, pts_preds) for lines in pts_targets]
        gt_labels = [
            torch.as_tensor(x, dtype=torch.long, device=cls_preds.device).reshape(-1) for x in cls_targets
        ]
        for b, (labels, lines) in enumerate(zip(gt_labels, gt_lines)):
            if labels.shape[0] != lines.shape[0]:
                raise ValueError(
                    f"SparsePoint3DTarget: sample {b} has {labels.shape[0]} gt_map_labels but "
                    f"{lines.shape[0]} gt_map_pts; both must list the same map elements."
                )

        # Costs of all samples go to the host in one copy (one device sync per decoder layer).
        costs, samples = [], []
        for b in range(batch):
            if gt_lines[b].shape[0] == 0 or num_pred == 0:
                continue
            preds = dict(lines=self.normalize_line(pts_preds[b]), scores=cls_preds[b])
            gts = dict(lines=self.normalize_line(gt_lines[b]), labels=gt_labels[b])
            cost, permute_idx = self.assigner.match_cost(preds, gts)
            # The ordering index rides along as float (exact: K is far below 2**24).
            costs.append(torch.stack([cost.detach().float(), permute_idx.float()]).flatten())
            samples.append(b)

        cls_target = cls_preds.new_full((batch, num_pred), num_cls, dtype=torch.long)
        line_target = pts_preds.new_zeros(pts_preds.shape)
        reg_weights = pts_preds.new_zeros(pts_preds.shape)
        if not samples:
            return cls_target, line_target, reg_weights

        host = torch.cat(costs).cpu().numpy()
        batch_idx, pred_idx, gt_idx, order_idx = [], [], [], []
        gt_offsets = np.cumsum([0] + [gt_lines[b].shape[0] for b in samples])
        start = 0
        for i, b in enumerate(samples):
            num_gt = gt_lines[b].shape[0]
            size = num_pred * num_gt
            cost = host[start : start + size].reshape(num_pred, num_gt)
            order = host[start + size : start + 2 * size].reshape(num_pred, num_gt)
            start += 2 * size
            rows, cols = hungarian(cost)
            batch_idx.append(np.full(len(rows), b))
            pred_idx.append(rows)
            gt_idx.append(cols + gt_offsets[i])
            order_idx.append(order[rows, cols].astype(np.int64))

        def to_index(parts: List[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.concatenate(parts).astype(np.int64)).to(cls_preds.device)

        batch_idx, pred_idx, gt_idx, order_idx = map(to_index, (batch_idx, pred_idx, gt_idx, order_idx))
        all_lines = torch.cat([gt_lines[b] for b in samples])
        all_labels = torch.cat([gt_labels[b] for b in samples])
        cls_target[batch_idx, pred_idx] = all_labels[gt_idx]
        line_target[batch_idx, pred_idx] = all_lines[gt_idx, order_idx]
        reg_weights[batch_idx, pred_idx] = 1
        return cls_target, line_target, reg_weights
