"""Polyline regression losses of the map head."""
from typing import Dict, Optional, Sequence, Union

import torch.nn as nn
from mmcv.utils import build_from_cfg
from mmdet.models.builder import LOSSES
from mmdet.models.losses import l1_loss, smooth_l1_loss
from torch import Tensor

from .utils import LineNormalizer

__all__ = ["LinesL1Loss", "SparseLineLoss"]

REDUCTIONS = (None, "none", "mean", "sum")


@LOSSES.register_module()
class LinesL1Loss(nn.Module):
    """(Smooth) L1 loss over polyline coordinates, divided by the number of points.

    loss = loss_weight * reduce(weight * smooth_l1(pred - target, beta)) / num_points, where reduce sums
    and divides by ``avg_factor`` when it is given (mmdet convention), and num_points = D / 2.

    Args:
        reduction: "none", "mean" or "sum".
        loss_weight: multiplier of the loss.
        beta: smooth-L1 transition point; 0 gives plain L1.
    """

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0, beta: float = 0.5) -> None:
        super().__init__()
        if reduction not in REDUCTIONS[1:]:
            raise ValueError(f"LinesL1Loss: reduction must be one of none/mean/sum, got {reduction!r}.")
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.beta = beta

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[Union[Tensor, float]] = None,
        reduction_override: Optional[str] = None,
    ) -> Tensor:
        """Args: pred, target [N, D]; weight [N, D] or None. Returns: the loss (scalar unless "none")."""
        if reduction_override not in REDUCTIONS:
            raise ValueError(f"LinesL1Loss: reduction_override must be one of {REDUCTIONS}.")
        reduction = reduction_override or self.reduction
        if self.beta > 0:
            loss = smooth_l1_loss(
                pred, target, weight, reduction=reduction, avg_factor=avg_factor, beta=self.beta
            )
        else:
            loss = l1_loss(pred, target, weight, reduction=reduction, avg_factor=avg_factor)
        num_points = pred.shape[-1] // 2
        return loss / num_points * self.loss_weight


@LOSSES.register_module()
class SparseLineLoss(nn.Module):
    """Map head regression loss: normalise both polylines to the ROI, then apply ``loss_line``.

    Args:
        loss_line: config of the inner loss (``LinesL1Loss``).
        num_sample: points per polyline.
        roi_size: (x, y) extent of the map ROI in metres.
    """

    def __init__(
        self, loss_line: dict, num_sample: int = 20, roi_size: Sequence[float] = (30, 60)
    ) -> None:
        super().__init__()
        self.loss_line = build_from_cfg(loss_line, LOSSES)
        self.num_sample = num_sample
        self.roi_size = tuple(roi_size)
        self._normalizer = LineNormalizer(num_sample, self.roi_size)

    def normalize_line(self, line: Tensor) -> Tensor:
        """Metres -> about [0, 1] of the ROI, [..., num_sample * coords_dim]."""
        return self._normalizer(line)

    def forward(
        self,
        line: Tensor,
        line_target: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[Union[Tensor, float]] = None,
        prefix: str = "",
        suffix: str = "",
        quality: Optional[Tensor] = None,
        cls_target: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """Args:
            line: predicted polylines of the supervised instances, metres, [N, D].
            line_target: matched GT polylines, metres, [N, D].
            weight: per-coordinate weights, [N, D].
            avg_factor: normaliser (number of positives).
            prefix, suffix: around the loss key, e.g. "map_" and "_0" -> "map_loss_line_0".
            quality, cls_target: passed by the shared head call; unused for polylines.
        Returns:
            {f"{prefix}loss_line{suffix}": scalar loss}.
        """
        loss = self.loss_line(
            self.normalize_line(line),
            self.normalize_line(line_target),
            weight=weight,
            avg_factor=avg_factor,
        )
        return {f"{prefix}loss_line{suffix}": loss}
