"""Stage-2 head: agents, map elements and the ego vehicle interact, then decode multi-mode futures."""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.cnn import Linear
from mmcv.cnn.bricks.registry import ATTENTION, FEEDFORWARD_NETWORK, NORM_LAYERS, PLUGIN_LAYERS
from mmcv.runner import BaseModule, force_fp32
from mmdet.core import reduce_mean
from mmdet.core.bbox.builder import BBOX_CODERS, BBOX_SAMPLERS
from mmdet.models import HEADS, LOSSES
from torch import Tensor, nn

from projects.mmdet3d_plugin.core.box3d import COS_YAW, SIN_YAW

from ..attention import gen_sineembed_for_position
from ..blocks import build_optional, decouple_projections, init_op_layers, linear_relu_ln
from ..instance_bank import read_anchor_file, topk
from .motion_blocks import NUM_COMMANDS

__all__ = ["MotionPlanningHead"]

AnchorSource = Union[str, Sequence, np.ndarray]


def _load_mode_anchor(anchor: AnchorSource, name: str, expected_tail: Tuple[int, ...]) -> Tensor:
    """Read a k-means anchor array from a .npy path or take it as given; check its trailing shape."""
    if isinstance(anchor, str):
        anchor = read_anchor_file(anchor, f"model.head.motion_plan_head.{name}")
    anchor = torch.tensor(np.asarray(anchor), dtype=torch.float32)
    if anchor.dim() != len(expected_tail) + 1 or tuple(anchor.shape[1:]) != expected_tail:
        raise ValueError(
            f"model.head.motion_plan_head.{name}: expected shape [*, {', '.join(map(str, expected_tail))}], "
            f"got {list(anchor.shape)}."
        )
    return anchor


@HEADS.register_module()
class MotionPlanningHead(BaseModule):
    """Motion prediction for every det instance and planning for the ego vehicle (SparseDrive stage 2).

    The 900 det instances plus one ego instance attend to their own history (temp_gnn), to the top
    ``num_det`` agents plus ego (gnn) and to the top ``num_map`` map elements (cross_gnn); the refine
    layer turns mode queries (from k-means anchors) into trajectories and scores.

    Args:
        fut_ts / fut_mode: agent future steps T and modes M.
        ego_fut_ts / ego_fut_mode: ego future steps T_e and modes per driving command M_e.
        motion_anchor: [num_cls, M, T, 2] agent-frame cumulative positions, or its .npy path.
        plan_anchor: [3, M_e, T_e, 2] ego-frame cumulative positions, or its .npy path.
        embed_dims: C.
        decouple_attn: attention on concat(feature, embedding) (2C) with fc_before / fc_after.
        instance_queue, temp_graph_model, graph_model, cross_graph_model, norm_layer, ffn, refine_layer:
            configs of the sub-modules built for ``operation_order``.
        motion_sampler, planning_sampler: target builders; motion_loss_*, plan_loss_*: loss configs.
        motion_decoder, planning_decoder: post-processing configs.
        num_det / num_map: agents / map elements used as keys.
    """

    def __init__(
        self,
        fut_ts: int = 12,
        fut_mode: int = 6,
        ego_fut_ts: int = 6,
        ego_fut_mode: int = 3,
        motion_anchor: Optional[AnchorSource] = None,
        plan_anchor: Optional[AnchorSource] = None,
        embed_dims: int = 256,
        decouple_attn: bool = False,
        instance_queue: Optional[dict] = None,
        operation_order: Optional[List[str]] = None,
        temp_graph_model: Optional[dict] = None,
        graph_model: Optional[dict] = None,
        cross_graph_model: Optional[dict] = None,
        norm_layer: Optional[dict] = None,
        ffn: Optional[dict] = None,
        refine_layer: Optional[dict] = None,
        motion_sampler: Optional[dict] = None,
        motion_loss_cls: Optional[dict] = None,
        motion_loss_reg: Optional[dict] = None,
        planning_sampler: Optional[dict] = None,
        plan_loss_cls: Optional[dict] = None,
        plan_loss_reg: Optional[dict] = None,
        plan_loss_status: Optional[dict] = None,
        motion_decoder: Optional[dict] = None,
        planning_decoder: Optional[dict] = None,
        num_det: int = 50,
        num_map: int = 10,
    ) -> None:
        super().__init__()
        if motion_anchor is None or plan_anchor is None:
            raise ValueError("MotionPlanningHead: motion_anchor and plan_anchor are required (array or .npy path).")
        self.fut_ts = fut_ts
        self.fut_mode = fut_mode
        self.ego_fut_ts = ego_fut_ts
        self.ego_fut_mode = ego_fut_mode
        self.embed_dims = embed_dims
        self.decouple_attn = decouple_attn
        self.operation_order = list(operation_order or [])
        self.num_det = num_det
        self.num_map = num_map

        self.instance_queue = build_optional(instance_queue, PLUGIN_LAYERS)
        self.motion_sampler = build_optional(motion_sampler, BBOX_SAMPLERS)
        self.planning_sampler = build_optional(planning_sampler, BBOX_SAMPLERS)
        self.motion_decoder = build_optional(motion_decoder, BBOX_CODERS)
        self.planning_decoder = build_optional(planning_decoder, BBOX_CODERS)
        op_config_map = {
            "temp_gnn": (temp_graph_model, ATTENTION),
            "gnn": (graph_model, ATTENTION),
            "cross_gnn": (cross_graph_model, ATTENTION),
            "norm": (norm_layer, NORM_LAYERS),
            "ffn": (ffn, FEEDFORWARD_NETWORK),
            "refine": (refine_layer, PLUGIN_LAYERS),
        }
        self.layers = nn.ModuleList(
            [build_optional(*op_config_map.get(op, (None, None))) for op in self.operation_order]
        )
        self.fc_before, self.fc_after = decouple_projections(embed_dims, decouple_attn)

        self.motion_loss_cls = build_optional(motion_loss_cls, LOSSES)
        self.motion_loss_reg = build_optional(motion_loss_reg, LOSSES)
        self.plan_loss_cls = build_optional(plan_loss_cls, LOSSES)
        self.plan_loss_reg = build_optional(plan_loss_reg, LOSSES)
        self.plan_loss_status = build_optional(plan_loss_status, LOSSES)

        self.motion_anchor = nn.Parameter(
            _load_mode_anchor(motion_anchor, "motion_anchor", (fut_mode, fut_ts, 2)), requires_grad=False
        )
        self.motion_anchor_encoder = nn.Sequential(*linear_relu_ln(embed_dims, 1, 1), Linear(embed_dims, embed_dims))
        self.plan_anchor = nn.Parameter(
            _load_mode_anchor(plan_anchor, "plan_anchor", (ego_fut_mode, ego_fut_ts, 2)), requires_grad=False
        )
        if self.plan_anchor.shape[0] != NUM_COMMANDS:
            raise ValueError(
                f"model.head.motion_plan_head.plan_anchor: expected {NUM_COMMANDS} commands in dim 0, "
                f"got {self.plan_anchor.shape[0]}."
            )
        self.plan_anchor_encoder = nn.Sequential(*linear_relu_ln(embed_dims, 1, 1), Linear(embed_dims, embed_dims))

    def init_weights(self) -> None:
        """Xavier for the interaction layers; the refine layer sets its own classifier biases."""
        init_op_layers(self, self.operation_order, self.layers)

    def get_motion_anchor(self, classification: Tensor, prediction: Tensor) -> Tensor:
        """Last waypoint of each instance's class anchors, rotated into the LiDAR frame by its yaw.

        Only the last waypoint feeds the mode query, so only it is rotated (upstream rotates all T).

        Args:
            classification: [B, A, num_cls] scores; prediction: [B, A, 11] det boxes (detached here).
        Returns:
            [B, A, M, 2] end points in metres, relative to each agent's centre.
        """
        end_points = self.motion_anchor[:, :, -1][classification.argmax(dim=-1)]
        prediction = prediction.detach()
        yaw = torch.atan2(prediction[..., SIN_YAW], prediction[..., COS_YAW])[..., None]
        cos_yaw, sin_yaw = torch.cos(yaw), torch.sin(yaw)
        x, y = end_points[..., 0], end_points[..., 1]
        return torch.stack([x * cos_yaw - y * sin_yaw, x * sin_yaw + y * cos_yaw], dim=-1)

    def graph_model(
        self,
        index: int,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        query_pos: Tensor,
        key_pos: Tensor,
        key_padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Attention layer ``index``; decoupled: concat(feature, embedding) as query/key, 2C value."""
        if self.decouple_attn:
            query = torch.cat([query, query_pos], dim=-1)
            key = torch.cat([key, key_pos], dim=-1)
            query_pos, key_pos = None, None
        value = self.fc_before(value)
        return self.fc_after(
            self.layers[index](
                query, key, value, query_pos=query_pos, key_pos=key_pos, key_padding_mask=key_padding_mask
            )
        )

    def forward(
        self,
        det_output: dict,
        map_output: dict,
        feature_maps: Sequence[Tensor],
        metas: dict,
        anchor_encoder: nn.Module,
        mask: Optional[Tensor],
        anchor_handler: Optional[nn.Module],
    ) -> Tuple[dict, dict]:
        """
        Args:
            det_output: det head output (``instance_feature`` [B, A, C], ``anchor_embed`` [B, A, C],
                ``classification`` / ``prediction`` lists, ``instance_id`` [B, A]).
            map_output: map head output (``instance_feature``, ``anchor_embed``, ``classification``).
            feature_maps: image features in either format (the ego instance uses the front camera).
            metas: batch metas (``img_metas`` with T_global / T_global_inv).
            anchor_encoder: the det head's box encoder (embeds ego and queued anchors).
            mask: [B] det instance-bank temporal mask; anchor_handler: the det bank's anchor projector.
        Returns:
            motion_output: ``classification`` [[B, A, M]], ``prediction`` [[B, A, M, T, 2]], ``period`` [B, A],
            ``anchor_queue`` (list of [B, A, 11]); planning_output: ``classification`` [[B, 1, 3*M_e]],
            ``prediction`` [[B, 1, 3*M_e, T_e, 2]], ``status`` [[B, 1, 10]], ``period`` [B, 1],
            ``anchor_queue`` (list of [B, 1, 11]).
        """
        instance_feature = det_output["instance_feature"]
        anchor_embed = det_output["anchor_embed"]
        det_classification = det_output["classification"][-1].sigmoid()
        det_confidence = det_classification.max(dim=-1).values
        _, (instance_feature_selected, anchor_embed_selected) = topk(
            det_confidence, self.num_det, instance_feature, anchor_embed
        )
        map_confidence = map_output["classification"][-1].sigmoid().max(dim=-1).values
        _, (map_instance_feature_selected, map_anchor_embed_selected) = topk(
            map_confidence, self.num_map, map_output["instance_feature"], map_output["anchor_embed"]
        )

        bs, num_anchor, dim = instance_feature.shape
        ego_feature, ego_anchor, temp_instance_feature, temp_anchor, temp_mask = self.instance_queue.get(
            det_output, feature_maps, metas, bs, mask, anchor_handler
        )
        ego_anchor_embed = anchor_encoder(ego_anchor)
        temp_anchor_embed = anchor_encoder(temp_anchor).flatten(0, 1)
        temp_instance_feature = temp_instance_feature.flatten(0, 1)
        temp_mask = temp_mask.flatten(0, 1)

        motion_anchor = self.get_motion_anchor(det_classification, det_output["prediction"][-1])
        motion_mode_query = self.motion_anchor_encoder(gen_sineembed_for_position(motion_anchor, dim))
        # plan anchors are shared by the batch: encode once, then broadcast
        plan_mode_query = self.plan_anchor_encoder(gen_sineembed_for_position(self.plan_anchor[:, :, -1], dim))
        plan_mode_query = plan_mode_query.flatten(0, 1)[None, None].expand(bs, -1, -1, -1)

        instance_feature_selected = torch.cat([instance_feature_selected, ego_feature], dim=1)
        anchor_embed_selected = torch.cat([anchor_embed_selected, ego_anchor_embed], dim=1)
        instance_feature = torch.cat([instance_feature, ego_feature], dim=1)
        anchor_embed = torch.cat([anchor_embed, ego_anchor_embed], dim=1)

        motion_classification, motion_prediction = [], []
        planning_classification, planning_prediction, planning_status = [], [], []
        for i, op in enumerate(self.operation_order):
            if self.layers[i] is None:
                continue
            if op == "temp_gnn":
                instance_feature = self.graph_model(
                    i,
                    instance_feature.flatten(0, 1).unsqueeze(1),
                    temp_instance_feature,
                    temp_instance_feature,
                    query_pos=anchor_embed.flatten(0, 1).unsqueeze(1),
                    key_pos=temp_anchor_embed,
                    key_padding_mask=temp_mask,
                ).reshape(bs, num_anchor + 1, dim)
            elif op == "gnn":
                instance_feature = self.graph_model(
                    i,
                    instance_feature,
                    instance_feature_selected,
                    instance_feature_selected,
                    query_pos=anchor_embed,
                    key_pos=anchor_embed_selected,
                )
            elif op in ("norm", "ffn"):
                instance_feature = self.layers[i](instance_feature)
            elif op == "cross_gnn":
                instance_feature = self.layers[i](
                    instance_feature,
                    key=map_instance_feature_selected,
                    query_pos=anchor_embed,
                    key_pos=map_anchor_embed_selected,
                )
            elif op == "refine":
                query = instance_feature + anchor_embed
                motion_cls, motion_reg, plan_cls, plan_reg, plan_status = self.layers[i](
                    motion_mode_query + query[:, :num_anchor, None],
                    plan_mode_query + query[:, num_anchor:, None],
                    instance_feature[:, num_anchor:],
                    anchor_embed[:, num_anchor:],
                )
                motion_classification.append(motion_cls)
                motion_prediction.append(motion_reg)
                planning_classification.append(plan_cls)
                planning_prediction.append(plan_reg)
                planning_status.append(plan_status)
            else:
                raise ValueError(f"MotionPlanningHead.operation_order: unknown op {op!r}.")

        self.instance_queue.cache_motion(instance_feature[:, :num_anchor], det_output, metas)
        self.instance_queue.cache_planning(instance_feature[:, num_anchor:], planning_status[-1])

        motion_output = {
            "classification": motion_classification,
            "prediction": motion_prediction,
            "period": self.instance_queue.period,
            "anchor_queue": self.instance_queue.anchor_queue,
        }
        planning_output = {
            "classification": planning_classification,
            "prediction": planning_prediction,
            "status": planning_status,
            "period": self.instance_queue.ego_period,
            "anchor_queue": self.instance_queue.ego_anchor_queue,
        }
        return motion_output, planning_output

    def loss(self, motion_model_outs: dict, planning_model_outs: dict, data: dict, motion_loss_cache: dict) -> dict:
        """Motion and planning losses, keys ``motion_loss_{cls,reg}_i`` and ``planning_loss_{cls,reg,status}_i``."""
        loss = self.loss_motion(motion_model_outs, data, motion_loss_cache)
        loss.update(self.loss_planning(planning_model_outs, data))
        return loss

    @force_fp32(apply_to=("model_outs",))
    def loss_motion(self, model_outs: dict, data: dict, motion_loss_cache: dict) -> dict:
        """Focal loss on the best mode, L1 on its cumulative positions (both averaged over matched agents).

        Args:
            data: ``gt_agent_fut_trajs`` (per sample [G, T, 2]) and ``gt_agent_fut_masks`` ([G, T]).
            motion_loss_cache: ``indices`` of the det head's last Hungarian assignment.
        """
        output = {}
        for decoder_idx, (cls, reg) in enumerate(zip(model_outs["classification"], model_outs["prediction"])):
            cls_target, cls_weight, reg_pred, reg_target, reg_weight, num_pos = self.motion_sampler.sample(
                reg, data["gt_agent_fut_trajs"], data["gt_agent_fut_masks"], motion_loss_cache
            )
            num_pos = reduce_mean(num_pos).clamp(min=1.0)
            cls_loss = self.motion_loss_cls(
                cls.flatten(end_dim=1),
                cls_target.flatten(end_dim=1),
                weight=cls_weight.flatten(end_dim=1).to(cls),
                avg_factor=num_pos,
            )
            reg_loss = self.motion_loss_reg(
                reg_pred.flatten(end_dim=1).cumsum(dim=-2),
                reg_target.flatten(end_dim=1).cumsum(dim=-2),
                weight=reg_weight.flatten(end_dim=1).unsqueeze(-1),
                avg_factor=num_pos,
            )
            output[f"motion_loss_cls_{decoder_idx}"] = cls_loss
            output[f"motion_loss_reg_{decoder_idx}"] = reg_loss
        return output

    @force_fp32(apply_to=("model_outs",))
    def loss_planning(self, model_outs: dict, data: dict) -> dict:
        """Focal loss on the command's best mode, L1 on its per-step displacements, L1 on the ego status.

        Args:
            data: ``gt_ego_fut_trajs`` [B, T_e, 2], ``gt_ego_fut_masks`` [B, T_e], ``gt_ego_fut_cmd`` [B, 3],
                ``ego_status`` [B, 10].
        """
        output = {}
        for decoder_idx, (cls, reg, status) in enumerate(
            zip(model_outs["classification"], model_outs["prediction"], model_outs["status"])
        ):
            cls, cls_target, cls_weight, reg_pred, reg_target, reg_weight = self.planning_sampler.sample(
                cls, reg, data["gt_ego_fut_trajs"], data["gt_ego_fut_masks"], data
            )
            cls_loss = self.plan_loss_cls(
                cls.flatten(end_dim=1), cls_target.flatten(end_dim=1), weight=cls_weight.flatten(end_dim=1).to(cls)
            )
            reg_loss = self.plan_loss_reg(
                reg_pred.flatten(end_dim=1),
                reg_target.flatten(end_dim=1),
                weight=reg_weight.flatten(end_dim=1).unsqueeze(-1),
            )
            status_loss = self.plan_loss_status(status.squeeze(1), data["ego_status"])
            output[f"planning_loss_cls_{decoder_idx}"] = cls_loss
            output[f"planning_loss_reg_{decoder_idx}"] = reg_loss
            output[f"planning_loss_status_{decoder_idx}"] = status_loss
        return output

    @force_fp32(apply_to=("model_outs",))
    def post_process(
        self, det_output: dict, motion_output: dict, planning_output: dict, data: dict
    ) -> Tuple[List[dict], List[dict]]:
        """Per-sample motion results (trajectories of the decoded det boxes) and planning results."""
        motion_result = self.motion_decoder.decode(
            det_output["classification"],
            det_output["prediction"],
            det_output.get("instance_id"),
            det_output.get("quality"),
            motion_output,
        )
        planning_result = self.planning_decoder.decode(det_output, motion_output, planning_output, data)
        return motion_result, planning_result
