"""Blocks shared by the detection, map and motion heads: deformable aggregation, depth branch, FFN.

Symbols: B batch, A anchors, N cameras, L feature levels, P key points per anchor, G groups, C channels.
"""
import copy
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import build_activation_layer, build_norm_layer, constant_init, xavier_init
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.registry import ATTENTION, FEEDFORWARD_NETWORK, PLUGIN_LAYERS
from mmcv.runner.base_module import BaseModule, Sequential
from mmcv.utils import Registry, build_from_cfg
from torch import Tensor, nn

from .. import ops

__all__ = [
    "linear_relu_ln",
    "build_optional",
    "decouple_projections",
    "init_op_layers",
    "DeformableFeatureAggregation",
    "DenseDepthNet",
    "AsymmetricFFN",
]

FeatureMaps = Union[List[Tensor], Sequence[Tensor]]


def linear_relu_ln(embed_dims: int, in_loops: int, out_loops: int, input_dims: Optional[int] = None) -> List[nn.Module]:
    """Layers of ``out_loops`` x (``in_loops`` x (Linear, ReLU), LayerNorm), ready for ``nn.Sequential``.

    The first Linear maps ``input_dims`` (default ``embed_dims``) to ``embed_dims``; every later one is square.
    """
    dims = embed_dims if input_dims is None else input_dims
    layers = []
    for _ in range(out_loops):
        for _ in range(in_loops):
            layers += [nn.Linear(dims, embed_dims), nn.ReLU(inplace=True)]
            dims = embed_dims
        layers.append(nn.LayerNorm(embed_dims))
    return layers


def build_optional(cfg: Optional[dict], registry: Registry) -> Optional[nn.Module]:
    """Build ``cfg`` from ``registry``; None stays None (an op or loss the config leaves out)."""
    return None if cfg is None else build_from_cfg(cfg, registry)


def decouple_projections(embed_dims: int, decouple_attn: bool) -> Tuple[nn.Module, nn.Module]:
    """``(fc_before, fc_after)`` of a head's attention: C -> 2C and 2C -> C without bias, or two identities.

    With decoupling, attention runs on concat(feature, embedding) at width 2C, so the value is widened by
    ``fc_before`` and the attention output narrowed back by ``fc_after``.
    """
    if decouple_attn:
        return nn.Linear(embed_dims, embed_dims * 2, bias=False), nn.Linear(embed_dims * 2, embed_dims, bias=False)
    return nn.Identity(), nn.Identity()


def init_op_layers(
    head: nn.Module, operation_order: Sequence[str], layers: Sequence[Optional[nn.Module]], reinit_fix_scale: bool = True
) -> None:
    """Xavier-uniform every >1-D parameter of the non-``refine`` op layers, then call each sub-module's ``init_weight``.

    ``reinit_fix_scale=False`` leaves parameters named ``*fix_scale`` (fixed key-point scales) untouched.
    """
    for op, layer in zip(operation_order, layers):
        if layer is None or op == "refine":
            continue
        for name, param in layer.named_parameters():
            if param.dim() > 1 and (reinit_fix_scale or not name.endswith("fix_scale")):
                nn.init.xavier_uniform_(param)
    for module in head.modules():
        if hasattr(module, "init_weight"):
            module.init_weight()


def _is_flat_features(feature_maps: FeatureMaps) -> bool:
    """True for the triple ``[col_feats [B, F, C], spatial_shape [N, L, 2], scale_start_index [N, L]]``."""
    return feature_maps[0].dim() == 3


@ATTENTION.register_module()
class DeformableFeatureAggregation(BaseModule):
    """Sample image features around each anchor's key points in every camera and mix them with learned weights.

    Args:
        embed_dims: C, channels of instance features and feature maps.
        num_groups: G, channel groups that get their own mixing weights (C must be divisible by G).
        num_levels: L, feature-map levels.
        num_cams: N, cameras.
        proj_drop: dropout after ``output_proj``.
        attn_drop: in training, probability of dropping a (camera, key point) pair from the mixing weights.
        kps_generator: config of the key-point generator (PLUGIN_LAYERS); ``embed_dims`` is filled in.
        use_deformable_func: when features arrive as a list of maps, flatten them and use
            ``ops.deformable_aggregation`` (True) or sample each level with ``grid_sample`` (False). Features that
            arrive already flattened always go through ``ops.deformable_aggregation``.
        use_camera_embed: weights depend on a learned embedding of each camera's projection matrix (one
            ``weights_fc`` shared by cameras) instead of a separate output block per camera.
        residual_mode: ``"add"`` returns output + input, ``"cat"`` returns concat(output, input) ([B, A, 2C]).
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_groups: int = 8,
        num_levels: int = 4,
        num_cams: int = 6,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        kps_generator: Optional[dict] = None,
        use_deformable_func: bool = False,
        use_camera_embed: bool = False,
        residual_mode: str = "add",
    ) -> None:
        super().__init__()
        if embed_dims % num_groups != 0:
            raise ValueError(
                f"DeformableFeatureAggregation: embed_dims={embed_dims} is not divisible by num_groups={num_groups}."
            )
        if residual_mode not in ("add", "cat"):
            raise ValueError(f"DeformableFeatureAggregation: residual_mode={residual_mode!r}; use 'add' or 'cat'.")
        if kps_generator is None:
            raise ValueError("DeformableFeatureAggregation: kps_generator config is required.")
        self.embed_dims = embed_dims
        self.num_groups = num_groups
        self.group_dims = embed_dims // num_groups
        self.num_levels = num_levels
        self.num_cams = num_cams
        self.attn_drop = attn_drop
        self.use_deformable_func = use_deformable_func
        self.residual_mode = residual_mode
        self.proj_drop = nn.Dropout(proj_drop)

        kps_generator = copy.deepcopy(kps_generator)
        kps_generator["embed_dims"] = embed_dims
        self.kps_generator = build_from_cfg(kps_generator, PLUGIN_LAYERS)
        self.num_pts = self.kps_generator.num_pts
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        weights_per_cam = num_groups * num_levels * self.num_pts
        if use_camera_embed:
            self.camera_encoder = Sequential(*linear_relu_ln(embed_dims, 1, 2, 12))
            self.weights_fc = nn.Linear(embed_dims, weights_per_cam)
        else:
            self.camera_encoder = None
            self.weights_fc = nn.Linear(embed_dims, weights_per_cam * num_cams)

    def init_weight(self) -> None:
        """Zero mixing weights (every sample starts equally weighted); Xavier output projection."""
        constant_init(self.weights_fc, val=0.0, bias=0.0)
        xavier_init(self.output_proj, distribution="uniform", bias=0.0)

    def forward(
        self,
        instance_feature: Tensor,
        anchor: Tensor,
        anchor_embed: Tensor,
        feature_maps: FeatureMaps,
        metas: dict,
    ) -> Tensor:
        """Aggregate features for every instance.

        Args:
            instance_feature: [B, A, C].
            anchor: [B, A, D] anchor states (format of the key-point generator).
            anchor_embed: [B, A, C] anchor embeddings.
            feature_maps: list of L maps [B, N, C, h, w], or the flattened triple of ``ops.feature_maps_format``.
            metas: ``projection_mat`` [B, N, 4, 4] (ego/LiDAR to image pixels) and optionally ``image_wh`` [B, N, 2].
        Returns:
            [B, A, C] for residual_mode "add", [B, A, 2C] for "cat" (aggregated first, input second).
        """
        key_points = self.kps_generator(anchor, instance_feature)
        weights = self._get_weights(instance_feature, anchor_embed, metas["projection_mat"])
        points_2d = self.project_points(key_points, metas["projection_mat"], metas.get("image_wh"))
        points_2d = points_2d.permute(0, 2, 3, 1, 4).contiguous()  # [B, A, P, N, 2]
        weights = weights.permute(0, 1, 4, 2, 3, 5)  # [B, A, P, N, L, G]; each backend sets its own layout
        if _is_flat_features(feature_maps):
            features = ops.deformable_aggregation(*feature_maps, points_2d, weights)
        elif self.use_deformable_func:
            features = ops.deformable_aggregation(*ops.feature_maps_format(feature_maps), points_2d, weights)
        else:
            features = ops.grid_sample_aggregation(feature_maps, points_2d, weights)
        features = features.to(instance_feature.dtype)
        output = self.proj_drop(self.output_proj(features))
        if self.residual_mode == "add":
            return output + instance_feature
        return torch.cat([output, instance_feature], dim=-1)

    def _get_weights(self, instance_feature: Tensor, anchor_embed: Tensor, projection_mat: Tensor) -> Tensor:
        """Mixing weights, softmax over (camera, level, point) per group: [B, A, N, L, P, G]."""
        bs, num_anchor = instance_feature.shape[:2]
        feature = instance_feature + anchor_embed
        if self.camera_encoder is not None:
            camera_embed = self.camera_encoder(projection_mat[:, :, :3].reshape(bs, self.num_cams, 12))
            feature = feature[:, :, None] + camera_embed[:, None]
        # softmax along the last axis of a [B, A, G, N*L*P] copy, viewed back: a softmax over the strided
        # axis -2 is several times slower on the CPU, and the kernels take any layout
        weights = (
            self.weights_fc(feature)
            .reshape(bs, num_anchor, -1, self.num_groups)
            .transpose(-1, -2)
            .softmax(dim=-1)
            .transpose(-1, -2)
            .reshape(bs, num_anchor, self.num_cams, self.num_levels, self.num_pts, self.num_groups)
        )
        if self.training and self.attn_drop > 0:
            # drop whole (camera, point) pairs across levels and groups, rescaling the rest
            noise = torch.rand(
                bs, num_anchor, self.num_cams, 1, self.num_pts, 1, device=weights.device, dtype=weights.dtype
            )
            weights = weights * ((noise > self.attn_drop) / (1 - self.attn_drop))  # one pass over the weights
        return weights

    @staticmethod
    def project_points(key_points: Tensor, projection_mat: Tensor, image_wh: Optional[Tensor] = None) -> Tensor:
        """Project key points into every camera with one batched matmul.

        Args:
            key_points: [B, A, P, 3] in the LiDAR frame, meters.
            projection_mat: [B, N, 4, 4] LiDAR-to-pixel matrices.
            image_wh: [B, N, 2] image width and height in pixels; when given the output is normalised to [0, 1].
        Returns:
            [B, N, A, P, 2] image coordinates (u, v). Depth is clamped at 1e-5 so points behind a camera land far
            outside the image instead of flipping sign; the samplers drop them.
        """
        bs, num_anchor, num_pts = key_points.shape[:3]
        num_cams = projection_mat.shape[1]
        points = key_points.reshape(bs, 1, num_anchor * num_pts, 3)
        cam_points = points @ projection_mat[:, :, :3, :3].transpose(-1, -2) + projection_mat[:, :, None, :3, 3]
        points_2d = cam_points[..., :2] / cam_points[..., 2:3].clamp(min=1e-5)
        if image_wh is not None:
            points_2d = points_2d / image_wh[:, :, None]
        return points_2d.reshape(bs, num_cams, num_anchor, num_pts, 2)


@PLUGIN_LAYERS.register_module()
class DenseDepthNet(BaseModule):
    """Auxiliary dense depth from the first FPN levels, supervised by projected LiDAR depth (training only).

    Args:
        embed_dims: C, channels of the feature maps.
        num_depth_layers: number of levels (from the finest) that get a 1x1 depth conv.
        equal_focal: focal length (pixels) the predicted depth is normalised to.
        max_depth: predictions are clipped to [0, max_depth] meters in the loss.
        loss_weight: scale of the L1 depth loss.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_depth_layers: int = 1,
        equal_focal: float = 100,
        max_depth: float = 60,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.equal_focal = equal_focal
        self.num_depth_layers = num_depth_layers
        self.max_depth = max_depth
        self.loss_weight = loss_weight
        self.depth_layers = nn.ModuleList(nn.Conv2d(embed_dims, 1, kernel_size=1) for _ in range(num_depth_layers))

    def forward(
        self, feature_maps: List[Tensor], focal: Optional[Tensor] = None, gt_depths: Optional[List[Tensor]] = None
    ) -> Union[List[Tensor], Tensor]:
        """Predict depth per level.

        Args:
            feature_maps: maps [B, N, C, h, w], finest first; only the first ``num_depth_layers`` are used.
            focal: [B, N] per-camera focal length in pixels (after image resizing); None means ``equal_focal``.
            gt_depths: per-level GT depth; when given in training mode the loss is returned instead.
        Returns:
            list of depth maps [B*N, 1, h, w] in meters (fp32), or the scalar loss.
        """
        focal = self.equal_focal if focal is None else focal.reshape(-1, 1, 1, 1)
        depths = []
        for layer, feature_map in zip(self.depth_layers, feature_maps):
            depth = layer(feature_map.flatten(end_dim=1).float()).exp()
            depths.append(depth * focal / self.equal_focal)
        if gt_depths is not None and self.training:
            return self.loss(depths, gt_depths)
        return depths

    def loss(self, depth_preds: List[Tensor], gt_depths: List[Tensor]) -> Tensor:
        """L1 loss over pixels with GT depth > 0, summed over levels.

        Args:
            depth_preds: per level [B*N, 1, h, w].
            gt_depths: per level, B*N*h*w values in (camera, row, column) order; 0 marks no LiDAR return.
        Returns:
            scalar: sum over levels of sum|clip(pred) - gt| / max(1, valid pixels * levels) * loss_weight (fp32).
        """
        loss = depth_preds[0].new_zeros(())
        for pred, gt in zip(depth_preds, gt_depths):
            pred = pred.float().permute(0, 2, 3, 1).reshape(-1)
            gt = gt.float().reshape(-1)
            valid = (gt > 0.0) & ~torch.isnan(pred)
            pred = pred[valid].clip(0.0, self.max_depth)
            error = (pred - gt[valid]).abs().sum()
            loss = loss + error / max(1.0, valid.sum().item() * len(depth_preds)) * self.loss_weight
        return loss


@FEEDFORWARD_NETWORK.register_module()
class AsymmetricFFN(BaseModule):
    """Feed-forward block whose input width may differ from its output width, with an optional pre-norm.

    Args:
        in_channels: input width (default ``embed_dims``).
        pre_norm: norm config applied to the input first (its output is also the identity branch).
        embed_dims: output width.
        feedforward_channels: hidden width.
        num_fcs: number of Linear layers (>= 2).
        act_cfg: activation config.
        ffn_drop: dropout after the activation and after the last Linear.
        dropout_layer: config of the dropout on the FFN branch before the residual sum.
        add_identity: add the (projected) input.
        init_cfg: mmcv init config.
    """

    def __init__(
        self,
        in_channels: Optional[int] = None,
        pre_norm: Optional[dict] = None,
        embed_dims: int = 256,
        feedforward_channels: int = 1024,
        num_fcs: int = 2,
        act_cfg: dict = dict(type="ReLU", inplace=True),
        ffn_drop: float = 0.0,
        dropout_layer: Optional[dict] = None,
        add_identity: bool = True,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg)
        if num_fcs < 2:
            raise ValueError(f"AsymmetricFFN: num_fcs={num_fcs}; it must be at least 2.")
        in_channels = embed_dims if in_channels is None else in_channels
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        self.num_fcs = num_fcs
        self.act_cfg = act_cfg
        self.activate = build_activation_layer(act_cfg)
        self.pre_norm = build_norm_layer(pre_norm, in_channels)[1] if pre_norm is not None else None

        layers = []
        dims = in_channels
        for _ in range(num_fcs - 1):
            layers.append(Sequential(nn.Linear(dims, feedforward_channels), self.activate, nn.Dropout(ffn_drop)))
            dims = feedforward_channels
        layers += [nn.Linear(feedforward_channels, embed_dims), nn.Dropout(ffn_drop)]
        self.layers = Sequential(*layers)
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()
        self.add_identity = add_identity
        if add_identity:
            # Upstream quirk kept for checkpoint keys: identity_fc is a Linear whenever the *hidden* width differs
            # from embed_dims, even if in_channels == embed_dims. Upstream also chose an identity when only the
            # hidden width matched, which crashes for in_channels != embed_dims; that case gets a Linear here.
            is_identity = feedforward_channels == embed_dims and in_channels == embed_dims
            self.identity_fc = nn.Identity() if is_identity else nn.Linear(in_channels, embed_dims)

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        """[..., in_channels] -> [..., embed_dims]; the identity defaults to the normalised input."""
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        out = self.dropout_layer(self.layers(x))
        if not self.add_identity:
            return out
        return self.identity_fc(x if identity is None else identity) + out
