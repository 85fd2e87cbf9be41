"""Matching costs between predicted and ground-truth polylines (normalised coordinates)."""
from typing import Dict, Optional, Tuple, Union

import torch.nn.functional as F
from mmdet.core.bbox.match_costs import build_match_cost
from mmdet.core.bbox.match_costs.builder import MATCH_COST
from torch import Tensor

__all__ = ["LinesL1Cost", "MapQueriesCost"]


@MATCH_COST.register_module()
class LinesL1Cost:
    """Mean per-point (smooth) L1 distance between every prediction and every GT polyline.

    With ``permute=True`` each GT comes with all of its equivalent point orderings and the cost of a
    pair is the minimum over those orderings; the index of the best ordering is returned as well.

    Args:
        weight: cost weight.
        beta: smooth-L1 transition point; 0 gives plain L1.
        permute: GT carries a permutation axis.
    """

    def __init__(self, weight: float = 1.0, beta: float = 0.0, permute: bool = False) -> None:
        self.weight = weight
        self.beta = beta
        self.permute = permute

    def __call__(self, lines_pred: Tensor, gt_lines: Tensor) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """Args:
            lines_pred: [A, D] with D = 2 * num_points.
            gt_lines: [G, K, D] (K orderings) if permute, else [G, D].
        Returns:
            cost [A, G]; with permute also the best ordering per pair, [A, G] long.
        """
        expected_dims = 3 if self.permute else 2
        if gt_lines.dim() != expected_dims:
            raise ValueError(
                f"LinesL1Cost(permute={self.permute}): gt_lines must be {expected_dims}-D, "
                f"got shape {tuple(gt_lines.shape)}."
            )
        if not self.permute:
            gt_lines = gt_lines[:, None]
        # [A, 1, 1, D] against [1, G, K, D]: every prediction, GT and ordering at once.
        pred = lines_pred[:, None, None, :].expand(-1, gt_lines.shape[0], gt_lines.shape[1], -1)
        gt = gt_lines[None].expand_as(pred)
        if self.beta > 0:
            dist = F.smooth_l1_loss(pred, gt, reduction="none", beta=self.beta)
        else:
            dist = (pred - gt).abs()
        num_points = lines_pred.shape[-1] // 2
        dist = dist.sum(-1) / num_points
        if not self.permute:
            return dist[..., 0] * self.weight
        cost, permute_idx = dist.min(dim=-1)
        return cost * self.weight, permute_idx


@MATCH_COST.register_module()
class MapQueriesCost:
    """Classification cost plus polyline regression cost.

    Args:
        cls_cost: config of the classification cost (e.g. mmdet ``FocalLossCost``).
        reg_cost: config of the polyline cost (``LinesL1Cost``).
    """

    def __init__(self, cls_cost: dict, reg_cost: dict) -> None:
        self.cls_cost = build_match_cost(cls_cost)
        self.reg_cost = build_match_cost(reg_cost)

    def __call__(
        self, preds: Dict[str, Tensor], gts: Dict[str, Tensor], ignore_cls_cost: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """Args:
            preds: ``scores`` logits [A, num_cls], ``lines`` normalised polylines [A, D].
            gts: ``labels`` [G] long, ``lines`` normalised polylines [G, K, D] (or [G, D]).
            ignore_cls_cost: use the regression cost only.
        Returns:
            cost [A, G]; with a permuting reg cost also the best GT ordering per pair, [A, G].
        """
        reg_cost = self.reg_cost(preds["lines"], gts["lines"])
        permute_idx: Optional[Tensor] = None
        if self.reg_cost.permute:
            reg_cost, permute_idx = reg_cost
        cost = reg_cost if ignore_cls_cost else self.cls_cost(preds["scores"], gts["labels"]) + reg_cost
        if permute_idx is None:
            return cost
        return cost, permute_idx
