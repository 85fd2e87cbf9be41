"""Polyline anchor encoder, keypoint generator and refinement layer of the sparse map head.

A map instance is a polyline of ``num_sample`` BEV points in the LiDAR frame (metres), stored flat as
``num_sample * coords_dim`` numbers (x0, y0, x1, y1, ...).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import Scale, bias_init_with_prob, xavier_init
from mmcv.cnn.bricks.registry import PLUGIN_LAYERS, POSITIONAL_ENCODING
from torch import Tensor

from ..blocks import linear_relu_ln

__all__ = [
    "SparsePoint3DEncoder",
    "SparsePoint3DKeyPointsGenerator",
    "SparsePoint3DRefinementModule",
]


def _check_last_dim(name: str, tensor: Tensor, expected: int) -> None:
    if tensor.shape[-1] != expected:
        raise ValueError(
            f"{name}: expected last dim {expected} (num_sample * coords_dim), got shape {tuple(tensor.shape)}."
        )


@POSITIONAL_ENCODING.register_module()
class SparsePoint3DEncoder(nn.Module):
    """Embed the raw polyline coordinates of each anchor (metres, not normalised).

    Args:
        embed_dims: output channels C.
        num_sample: points per polyline.
        coords_dim: coordinates per point (2: x, y).
    """

    def __init__(self, embed_dims: int = 256, num_sample: int = 20, coords_dim: int = 2) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.input_dims = num_sample * coords_dim
        self.pos_fc = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2, self.input_dims))

    def forward(self, anchor: Tensor) -> Tensor:
        """Args: anchor [B, A, num_sample * coords_dim]. Returns: anchor embedding [B, A, C]."""
        _check_last_dim("SparsePoint3DEncoder anchor", anchor, self.input_dims)
        return self.pos_fc(anchor)


@PLUGIN_LAYERS.register_module()
class SparsePoint3DRefinementModule(nn.Module):
    """Refine every polyline point by a residual offset and classify the instance.

    Args:
        embed_dims: feature channels C.
        num_sample: points per polyline.
        coords_dim: coordinates per point.
        num_cls: number of map classes (3: ped_crossing, divider, boundary).
        with_cls_branch: build ``cls_layers``.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_sample: int = 20,
        coords_dim: int = 2,
        num_cls: int = 3,
        with_cls_branch: bool = True,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.num_sample = num_sample
        self.output_dim = num_sample * coords_dim
        self.num_cls = num_cls
        self.layers = nn.Sequential(
            *linear_relu_ln(embed_dims, 2, 2),
            nn.Linear(embed_dims, self.output_dim),
            Scale([1.0] * self.output_dim),
        )
        self.with_cls_branch = with_cls_branch
        if with_cls_branch:
            self.cls_layers = nn.Sequential(
                *linear_relu_ln(embed_dims, 1, 2),
                nn.Linear(embed_dims, num_cls),
            )

    def init_weight(self) -> None:
        """Start every class at a 1% foreground probability (focal-loss prior)."""
        if self.with_cls_branch:
            nn.init.constant_(self.cls_layers[-1].bias, bias_init_with_prob(0.01))

    def forward(
        self,
        instance_feature: Tensor,
        anchor: Tensor,
        anchor_embed: Tensor,
        time_interval: Union[Tensor, float] = 1.0,
        return_cls: bool = True,
    ) -> Tuple[Tensor, Optional[Tensor], None]:
        """Predict refined polylines and class logits.

        Args:
            instance_feature: [B, A, C].
            anchor: current polylines, metres, [B, A, num_sample * coords_dim].
            anchor_embed: [B, A, C].
            time_interval: unused (polylines are static); kept for the head's common refine call.
            return_cls: also return class logits.
        Returns:
            (polylines [B, A, num_sample * coords_dim], logits [B, A, num_cls] or None, quality None).
        """
        _check_last_dim("SparsePoint3DRefinementModule anchor", anchor, self.output_dim)
        points = self.layers(instance_feature + anchor_embed) + anchor
        cls = None
        if return_cls:
            if not self.with_cls_branch:
                raise ValueError(
                    "SparsePoint3DRefinementModule: return_cls=True needs with_cls_branch=True in refine_layer."
                )
            # Classification sees the feature only, without the anchor embedding (as upstream).
            cls = self.cls_layers(instance_feature)
        return points, cls, None


@PLUGIN_LAYERS.register_module()
class SparsePoint3DKeyPointsGenerator(nn.Module):
    """Sample 3D keypoints around each polyline point for deformable feature aggregation.

    For every polyline point, ``num_learnable_pts`` learned BEV offsets are placed at each height
    ``ground_height + fix_height[h]`` (metres, LiDAR frame). Without learnable points the module only
    serves as the instance bank's anchor handler (``anchor_projection``).

    Args:
        embed_dims: feature channels C.
        num_sample: points per polyline S.
        num_learnable_pts: learned offsets per point and height L.
        fix_height: height offsets H above the ground, metres.
        ground_height: z of the road surface in the LiDAR frame, metres.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_sample: int = 20,
        num_learnable_pts: int = 0,
        fix_height: Sequence[float] = (0,),
        ground_height: float = 0,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.num_sample = num_sample
        self.num_learnable_pts = num_learnable_pts
        self.fix_height = tuple(float(h) for h in fix_height)
        self.ground_height = float(ground_height)
        self.num_pts = num_sample * len(self.fix_height) * num_learnable_pts
        if num_learnable_pts > 0:
            self.learnable_fc = nn.Linear(embed_dims, self.num_pts * 2)

    def init_weight(self) -> None:
        """Xavier-uniform offsets of the learnable key points."""
        if self.num_learnable_pts > 0:
            xavier_init(self.learnable_fc, distribution="uniform", bias=0.0)

    def forward(self, anchor: Tensor, instance_feature: Tensor) -> Tensor:
        """Args: anchor [B, A, S * 2] (metres); instance_feature [B, A, C].

        Returns: keypoints [B, A, S * H * L, 3] in the LiDAR frame, ordered point-major, then height,
        then learnable offset.
        """
        if self.num_learnable_pts <= 0:
            raise ValueError(
                "SparsePoint3DKeyPointsGenerator: keypoints need num_learnable_pts > 0 in kps_generator."
            )
        batch, num_anchor = anchor.shape[:2]
        num_height = len(self.fix_height)
        points = anchor.reshape(batch, num_anchor, self.num_sample, 1, 1, 2)
        offset = self.learnable_fc(instance_feature).reshape(
            batch, num_anchor, self.num_sample, num_height, self.num_learnable_pts, 2
        )
        xy = points + offset
        z = anchor.new_tensor(self.fix_height) + self.ground_height
        z = z[:, None, None].expand(xy.shape[:-1] + (1,))
        return torch.cat([xy, z], dim=-1).flatten(2, 4)

    def anchor_projection(
        self,
        anchor: Tensor,
        T_src2dst_list: List[Tensor],
        src_timestamp: Optional[Tensor] = None,
        dst_timestamps: Optional[List[Tensor]] = None,
        time_intervals: Optional[List[Tensor]] = None,
    ) -> List[Tensor]:
        """Move polylines into other frames with the 2D rigid part of each transform.

        Map elements are static, so timestamps and time intervals are accepted and ignored.

        Args:
            anchor: polylines, metres, [B, A, S * 2].
            T_src2dst_list: 4x4 source-to-destination transforms, each [B, 4, 4].
        Returns:
            One projected [B, A, S * 2] tensor per transform.
        """
        batch, num_anchor = anchor.shape[:2]
        points = anchor.reshape(batch, num_anchor, self.num_sample, 2)
        projected = []
        for transform in T_src2dst_list:
            transform = transform.to(dtype=anchor.dtype)
            rot = transform[:, None, None, :2, :2]
            shift = transform[:, None, None, :2, 3]
            dst = (rot @ points[..., None]).squeeze(-1) + shift
            projected.append(dst.flatten(2, 3))
        return projected
