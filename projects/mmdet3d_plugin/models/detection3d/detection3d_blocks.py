"""Box-specific blocks of the Sparse4D detection head: anchor encoder, refinement, key points, anchor projection.

Anchors follow the 11-d state of ``core/box3d.py``. Symbols: B batch, A anchors, P key points, C channels.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import Scale, bias_init_with_prob, xavier_init
from mmcv.cnn.bricks.registry import PLUGIN_LAYERS, POSITIONAL_ENCODING
from mmcv.runner.base_module import BaseModule
from torch import Tensor, nn

from ...core.box3d import COS_YAW, H, L, SIN_YAW, VX, W, X, Y, Z
from ..blocks import linear_relu_ln

__all__ = ["SparseBox3DEncoder", "SparseBox3DRefinementModule", "SparseBox3DKeyPointsGenerator"]


@POSITIONAL_ENCODING.register_module()
class SparseBox3DEncoder(BaseModule):
    """Embed an anchor state with one MLP per part (centre, log size, yaw, velocity).

    Args:
        embed_dims: output width, or per-part widths ``[pos, size, yaw, vel, (out)]``.
        vel_dims: how many velocity components to embed (0 for none).
        mode: ``"add"`` sums the part embeddings (all widths equal), ``"cat"`` concatenates them.
        output_fc: apply a final linear-relu-ln block of width ``embed_dims[-1]``.
        in_loops: (Linear, ReLU) pairs per block.
        out_loops: blocks per part, each ending in a LayerNorm.
    """

    def __init__(
        self,
        embed_dims: Union[int, Sequence[int]],
        vel_dims: int = 3,
        mode: str = "add",
        output_fc: bool = True,
        in_loops: int = 1,
        out_loops: int = 2,
    ) -> None:
        super().__init__()
        if mode not in ("add", "cat"):
            raise ValueError(f"SparseBox3DEncoder: mode={mode!r}; use 'add' or 'cat'.")
        self.embed_dims = embed_dims
        self.vel_dims = vel_dims
        self.mode = mode
        dims = list(embed_dims) if isinstance(embed_dims, (list, tuple)) else [embed_dims] * 5

        def embedding_layer(input_dims: int, output_dims: int) -> nn.Sequential:
            return nn.Sequential(*linear_relu_ln(output_dims, in_loops, out_loops, input_dims))

        self.pos_fc = embedding_layer(3, dims[0])
        self.size_fc = embedding_layer(3, dims[1])
        self.yaw_fc = embedding_layer(2, dims[2])
        if vel_dims > 0:
            self.vel_fc = embedding_layer(vel_dims, dims[3])
        self.output_fc = embedding_layer(dims[-1], dims[-1]) if output_fc else None

    def forward(self, box_3d: Tensor) -> Tensor:
        """[..., 11] anchor states -> [..., C] embeddings."""
        feats = [
            self.pos_fc(box_3d[..., [X, Y, Z]]),
            self.size_fc(box_3d[..., [W, L, H]]),
            self.yaw_fc(box_3d[..., [SIN_YAW, COS_YAW]]),
        ]
        if self.vel_dims > 0:
            feats.append(self.vel_fc(box_3d[..., VX : VX + self.vel_dims]))
        output = torch.cat(feats, dim=-1) if self.mode == "cat" else sum(feats[1:], feats[0])
        if self.output_fc is not None:
            output = self.output_fc(output)
        return output


@PLUGIN_LAYERS.register_module()
class SparseBox3DRefinementModule(BaseModule):
    """Predict a residual update of each anchor, class logits and (optionally) quality logits.

    Args:
        embed_dims: C.
        output_dim: state dims predicted (11: up to vz).
        num_cls: number of classes.
        normalize_yaw: rescale the refined (sin, cos) to unit length.
        refine_yaw: the yaw pair is a residual on the anchor's (otherwise predicted from scratch).
        with_cls_branch: build ``cls_layers``.
        with_quality_estimation: build ``quality_layers`` (centerness, yawness).
    """

    def __init__(
        self,
        embed_dims: int = 256,
        output_dim: int = 11,
        num_cls: int = 10,
        normalize_yaw: bool = False,
        refine_yaw: bool = False,
        with_cls_branch: bool = True,
        with_quality_estimation: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.output_dim = output_dim
        self.num_cls = num_cls
        self.normalize_yaw = normalize_yaw
        self.refine_yaw = refine_yaw
        # residual dims are contiguous: X..H, plus SIN_YAW, COS_YAW when refining yaw
        self.num_refine_dims = COS_YAW + 1 if refine_yaw else H + 1
        self.layers = nn.Sequential(
            *linear_relu_ln(embed_dims, 2, 2), nn.Linear(embed_dims, output_dim), Scale([1.0] * output_dim)
        )
        self.with_cls_branch = with_cls_branch
        if with_cls_branch:
            self.cls_layers = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, num_cls))
        self.with_quality_estimation = with_quality_estimation
        if with_quality_estimation:
            self.quality_layers = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, 2))

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
    ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Refine anchors.

        Args:
            instance_feature: [B, A, C].
            anchor: [B, A, 11] current anchors.
            anchor_embed: [B, A, C].
            time_interval: [B] seconds since the previous frame (or a float); the network predicts the
                displacement over that interval, so velocity = displacement / dt + anchor velocity.
            return_cls: also compute class and quality logits.
        Returns:
            refined anchors [B, A, output_dim], class logits [B, A, num_cls] or None, quality logits
            [B, A, 2] (centerness, yawness) or None. Class logits use the feature without the anchor embedding.
        """
        feature = instance_feature + anchor_embed
        delta = self.layers(feature)
        n = self.num_refine_dims
        output = torch.cat([delta[..., :n] + anchor[..., :n], delta[..., n : min(VX, self.output_dim)]], dim=-1)
        if self.normalize_yaw:
            yaw = nn.functional.normalize(output[..., SIN_YAW : COS_YAW + 1], dim=-1)
            output = torch.cat([output[..., :SIN_YAW], yaw], dim=-1)
        if self.output_dim > VX:
            if not isinstance(time_interval, Tensor):
                time_interval = instance_feature.new_tensor(time_interval)
            dt = time_interval.reshape(time_interval.shape + (1,) * (delta.dim() - time_interval.dim()))
            velocity = delta[..., VX:] / dt + anchor[..., VX : self.output_dim]
            output = torch.cat([output, velocity], dim=-1)

        cls = quality = None
        if return_cls:
            if not self.with_cls_branch:
                raise ValueError("SparseBox3DRefinementModule: return_cls=True needs with_cls_branch=True.")
            cls = self.cls_layers(instance_feature)
            if self.with_quality_estimation:
                quality = self.quality_layers(feature)
        return output, cls, quality


@PLUGIN_LAYERS.register_module()
class SparseBox3DKeyPointsGenerator(BaseModule):
    """Key points of each box: fixed offsets and (optionally) learned offsets, scaled by size, rotated by yaw.

    Also carries the ego-motion projection of anchors between frames (``anchor_projection``), which is why the
    instance bank and the motion instance queue use it as their ``anchor_handler``.

    Args:
        embed_dims: C, width of the instance feature that predicts the learnable points.
        num_learnable_pts: learned points per box.
        fix_scale: [K, 3] fixed points in units of the box size (W, L, H); default one point at the centre.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_learnable_pts: int = 0,
        fix_scale: Optional[Sequence[Sequence[float]]] = None,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.num_learnable_pts = num_learnable_pts
        if fix_scale is None:
            fix_scale = ((0.0, 0.0, 0.0),)
        self.fix_scale = nn.Parameter(torch.tensor(fix_scale, dtype=torch.float32), requires_grad=False)
        self.num_pts = len(self.fix_scale) + num_learnable_pts
        if num_learnable_pts > 0:
            self.learnable_fc = nn.Linear(embed_dims, num_learnable_pts * 3)

    def init_weight(self) -> None:
        """Xavier-uniform offsets of the learnable key points."""
        if self.num_learnable_pts > 0:
            xavier_init(self.learnable_fc, distribution="uniform", bias=0.0)

    def forward(self, anchor: Tensor, instance_feature: Optional[Tensor] = None) -> Tensor:
        """Key points in the LiDAR frame.

        Args:
            anchor: [B, A, 11] anchor states.
            instance_feature: [B, A, C]; without it only the fixed points are produced.
        Returns:
            [B, A, P, 3] meters: the fixed points first, then the learnable ones (each in (-0.5, 0.5) x size).
        """
        bs, num_anchor = anchor.shape[:2]
        size = anchor[..., None, [W, L, H]].exp()
        key_points = self.fix_scale * size
        if self.num_learnable_pts > 0 and instance_feature is not None:
            learnable = self.learnable_fc(instance_feature).reshape(bs, num_anchor, self.num_learnable_pts, 3)
            key_points = torch.cat([key_points, (learnable.sigmoid() - 0.5) * size], dim=-2)
        # rotate about z with the anchor's (cos, sin) as given, not normalised
        cos, sin = anchor[..., None, COS_YAW], anchor[..., None, SIN_YAW]
        px, py, pz = key_points.unbind(dim=-1)
        rotated = torch.stack([cos * px - sin * py, sin * px + cos * py, pz], dim=-1)
        return rotated + anchor[..., None, [X, Y, Z]]

    @staticmethod
    def anchor_projection(
        anchor: Tensor,
        T_src2dst_list: List[Tensor],
        src_timestamp: Optional[Tensor] = None,
        dst_timestamps: Optional[List[Tensor]] = None,
        time_intervals: Optional[List[Tensor]] = None,
    ) -> List[Tensor]:
        """Move anchors from a source frame into each destination frame.

        Args:
            anchor: [B, A, 8 + V] states in the source frame (V velocity dims).
            T_src2dst_list: per destination, [B, 4, 4] source-to-destination transforms.
            src_timestamp: [B] seconds; with ``dst_timestamps`` gives t = src - dst.
            dst_timestamps: per destination, [B] seconds.
            time_intervals: per destination, [B] (or scalar) t, overriding the timestamps. The centre is first
                moved by -velocity * t; the instance bank passes t = -dt to move cached boxes forward by dt.
        Returns:
            per destination, [B, A, 8 + V]: centre and yaw transformed, size unchanged, velocity rotated.
        """
        outputs = []
        vel = anchor[..., VX:]
        vel_dims = vel.shape[-1]
        for i, T_src2dst in enumerate(T_src2dst_list):
            T = T_src2dst.to(dtype=anchor.dtype)[:, None]  # [B, 1, 4, 4]
            if time_intervals is not None:
                time_interval = time_intervals[i]
            elif src_timestamp is not None and dst_timestamps is not None:
                time_interval = (src_timestamp - dst_timestamps[i]).to(dtype=anchor.dtype)
            else:
                time_interval = None
            center = anchor[..., [X, Y, Z]]
            if time_interval is not None:
                if isinstance(time_interval, Tensor) and time_interval.dim() > 0:
                    time_interval = time_interval.reshape(-1, *([1] * (vel.dim() - 1)))
                center = center - vel * time_interval
            center = (T[..., :3, :3] @ center[..., None]).squeeze(-1) + T[..., :3, 3]
            cos_sin = (T[..., :2, :2] @ anchor[..., [COS_YAW, SIN_YAW], None]).squeeze(-1)
            new_vel = (T[..., :vel_dims, :vel_dims] @ vel[..., None]).squeeze(-1)
            outputs.append(torch.cat([center, anchor[..., [W, L, H]], cos_sin.flip(-1), new_vel], dim=-1))
        return outputs

    @staticmethod
    def distance(anchor: Tensor) -> Tensor:
        """[..., D] states -> [...] horizontal distance of the centre from the origin, meters."""
        return torch.norm(anchor[..., :2], p=2, dim=-1)
