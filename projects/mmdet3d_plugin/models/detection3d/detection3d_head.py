"""Sparse4D decoder head: anchors -> (attention, deformable aggregation, FFN, refinement) x decoders.

The same class runs the 3-D box head (det) and the polyline head (map); the sub-module configs decide.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmcv.cnn.bricks.registry import ATTENTION, FEEDFORWARD_NETWORK, NORM_LAYERS, PLUGIN_LAYERS, POSITIONAL_ENCODING
from mmcv.runner import BaseModule, force_fp32
from mmdet.core import reduce_mean
from mmdet.core.bbox.builder import BBOX_CODERS, BBOX_SAMPLERS
from mmdet.models import HEADS, LOSSES
from torch import Tensor, nn

from ..blocks import build_optional, decouple_projections, init_op_layers

__all__ = ["Sparse4DHead"]

DEFAULT_OPERATION_ORDER = ["temp_gnn", "gnn", "norm", "deformable", "norm", "ffn", "norm", "refine"]


@HEADS.register_module()
class Sparse4DHead(BaseModule):
    """Sparse query decoder over multi-camera image features with a temporal instance bank.

    Args:
        instance_bank: ``InstanceBank`` config.
        anchor_encoder: anchor embedding config (POSITIONAL_ENCODING).
        graph_model: self-attention config (ATTENTION) for ``gnn``.
        norm_layer: NORM_LAYERS config for ``norm``.
        ffn: FEEDFORWARD_NETWORK config for ``ffn``.
        deformable_model: ATTENTION config for ``deformable``.
        refine_layer: PLUGIN_LAYERS config for ``refine``.
        num_decoder: decoder layers (used only by the default operation order).
        num_single_frame_decoder: the instance bank merges cached instances after this many refines.
        temp_graph_model: temporal cross-attention config for ``temp_gnn`` (None: skipped).
        loss_cls / loss_reg: LOSSES configs.
        decoder: BBOX_CODERS config for post-processing.
        sampler: BBOX_SAMPLERS config (target assignment, optional denoising).
        gt_cls_key / gt_reg_key / gt_id_key: keys of labels, boxes and instance ids in the data dict.
        with_instance_id: assign track ids at the end of every forward.
        task_prefix: loss-key prefix ("det", "map").
        reg_weights: per-dimension regression weights; their length truncates predictions and targets.
        operation_order: list of ops; each builds one entry of ``self.layers``.
        cls_threshold_to_reg: regress only instances whose max class score exceeds this.
        dn_loss_weight: accepted for upstream compatibility; unused (upstream never uses it either).
        decouple_attn: attention on concat(feature, embedding) at twice the width (fc_before / fc_after).
        init_cfg: mmcv init config.
        reinit_fix_scale: upstream's ``init_weights`` also xavier-initialises the non-trainable
            ``kps_generator.fix_scale`` of the op layers (so released checkpoints carry random key-point
            scales); False keeps the configured scales when training from scratch.
    """

    def __init__(
        self,
        instance_bank: dict,
        anchor_encoder: dict,
        graph_model: dict,
        norm_layer: dict,
        ffn: dict,
        deformable_model: dict,
        refine_layer: dict,
        num_decoder: int = 6,
        num_single_frame_decoder: int = -1,
        temp_graph_model: Optional[dict] = None,
        loss_cls: Optional[dict] = None,
        loss_reg: Optional[dict] = None,
        decoder: Optional[dict] = None,
        sampler: Optional[dict] = None,
        gt_cls_key: str = "gt_labels_3d",
        gt_reg_key: str = "gt_bboxes_3d",
        gt_id_key: str = "instance_id",
        with_instance_id: bool = True,
        task_prefix: str = "det",
        reg_weights: Optional[List[float]] = None,
        operation_order: Optional[List[str]] = None,
        cls_threshold_to_reg: float = -1,
        dn_loss_weight: float = 5.0,
        decouple_attn: bool = True,
        init_cfg: Optional[dict] = None,
        reinit_fix_scale: bool = True,
    ) -> None:
        super().__init__(init_cfg)
        self.num_decoder = num_decoder
        self.num_single_frame_decoder = num_single_frame_decoder
        self.gt_cls_key = gt_cls_key
        self.gt_reg_key = gt_reg_key
        self.gt_id_key = gt_id_key
        self.with_instance_id = with_instance_id
        self.task_prefix = task_prefix
        self.cls_threshold_to_reg = cls_threshold_to_reg
        self.dn_loss_weight = dn_loss_weight
        self.decouple_attn = decouple_attn
        self.reinit_fix_scale = reinit_fix_scale
        self.reg_weights = [1.0] * 10 if reg_weights is None else list(reg_weights)
        if operation_order is None:
            # the first decoder has no temp_gnn / gnn / norm
            operation_order = (DEFAULT_OPERATION_ORDER * num_decoder)[3:]
        self.operation_order = list(operation_order)

        self.instance_bank = build_optional(instance_bank, PLUGIN_LAYERS)
        self.anchor_encoder = build_optional(anchor_encoder, POSITIONAL_ENCODING)
        self.sampler = build_optional(sampler, BBOX_SAMPLERS)
        self.decoder = build_optional(decoder, BBOX_CODERS)
        self.loss_cls = build_optional(loss_cls, LOSSES)
        self.loss_reg = build_optional(loss_reg, LOSSES)
        op_configs = {
            "temp_gnn": (temp_graph_model, ATTENTION),
            "gnn": (graph_model, ATTENTION),
            "norm": (norm_layer, NORM_LAYERS),
            "ffn": (ffn, FEEDFORWARD_NETWORK),
            "deformable": (deformable_model, ATTENTION),
            "refine": (refine_layer, PLUGIN_LAYERS),
        }
        unknown = sorted(set(self.operation_order) - set(op_configs))
        if unknown:
            raise ValueError(f"Sparse4DHead.operation_order: unsupported ops {unknown}; use {sorted(op_configs)}.")
        self.layers = nn.ModuleList([build_optional(*op_configs[op]) for op in self.operation_order])
        self.embed_dims = self.instance_bank.embed_dims
        self.fc_before, self.fc_after = decouple_projections(self.embed_dims, self.decouple_attn)

    def init_weights(self) -> None:
        """Xavier-init every >1-D parameter of the non-refine ops, then each sub-module's ``init_weight``.

        Upstream quirk kept by default: the first loop also re-initialises the non-trainable
        ``kps_generator.fix_scale`` of the det deformable layers (checkpoints carry those random values);
        ``reinit_fix_scale=False`` skips them.
        """
        init_op_layers(self, self.operation_order, self.layers, reinit_fix_scale=self.reinit_fix_scale)

    def graph_model(
        self,
        index: int,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        key_pos: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Run attention layer ``index``; with decoupling on concat(x, pos) at 2C, value through fc_before.

        Args:
            query: [B, A, C]; key / value: [B, K, C] or None; query_pos: [B, A, C]; key_pos: [B, K, C].
        Returns:
            [B, A, C].
        """
        if self.decouple_attn:
            query = torch.cat([query, query_pos], dim=-1)
            if key is not None:
                key = torch.cat([key, key_pos], dim=-1)
            query_pos, key_pos = None, None
        if value is not None:
            value = self.fc_before(value)
        out = self.layers[index](query, key, value, query_pos=query_pos, key_pos=key_pos, attn_mask=attn_mask)
        return self.fc_after(out)

    def _gt_instance_ids(self, metas: dict, device: torch.device) -> Optional[List[Tensor]]:
        img_metas = metas["img_metas"]
        if self.gt_id_key not in img_metas[0]:
            return None
        # upstream moves these with .cuda(); the feature device works on every backend
        return [torch.as_tensor(x[self.gt_id_key], device=device) for x in img_metas]

    def forward(self, feature_maps: Union[Tensor, List], metas: dict) -> Dict[str, object]:
        """Decode instances from image features.

        Args:
            feature_maps: flattened triple [col_feats [B, N*sum(HW), C], spatial_shape [N, L, 2],
                scale_start_index [N, L]] or a list of per-level maps [B, N, C, h, w].
            metas: data dict (projection_mat, image_wh, timestamp, img_metas, GT during training).
        Returns:
            dict with classification / prediction / quality (one entry per refine layer: [B, A, num_cls],
            [B, A, S], [B, A, 2] or None), instance_feature [B, A, C], anchor_embed [B, A, C] and, with
            instance ids, instance_id [B, A]; denoising outputs when the sampler produced dn anchors.
        """
        if isinstance(feature_maps, Tensor):
            feature_maps = [feature_maps]
        batch_size = feature_maps[0].shape[0]

        sampler_dn_metas = getattr(self.sampler, "dn_metas", None)
        if sampler_dn_metas is not None and sampler_dn_metas["dn_anchor"].shape[0] != batch_size:
            self.sampler.dn_metas = sampler_dn_metas = None
        instance_feature, anchor, temp_instance_feature, temp_anchor, time_interval = self.instance_bank.get(
            batch_size, metas, dn_metas=sampler_dn_metas
        )

        attn_mask = None
        dn_metas = None
        temp_dn_reg_target = None
        if self.training and hasattr(self.sampler, "get_dn_anchors"):
            dn_metas = self.sampler.get_dn_anchors(
                metas[self.gt_cls_key], metas[self.gt_reg_key], self._gt_instance_ids(metas, anchor.device)
            )
        if dn_metas is not None:
            dn_anchor, dn_reg_target, dn_cls_target, dn_attn_mask, valid_mask, dn_id_target = dn_metas
            num_dn_anchor = dn_anchor.shape[1]
            if dn_anchor.shape[-1] != anchor.shape[-1]:
                pad = anchor.shape[-1] - dn_anchor.shape[-1]
                dn_anchor = torch.cat([dn_anchor, dn_anchor.new_zeros(batch_size, num_dn_anchor, pad)], dim=-1)
            anchor = torch.cat([anchor, dn_anchor], dim=1)
            instance_feature = torch.cat(
                [instance_feature, instance_feature.new_zeros(batch_size, num_dn_anchor, instance_feature.shape[-1])],
                dim=1,
            )
            num_instance = instance_feature.shape[1]
            num_free_instance = num_instance - num_dn_anchor
            attn_mask = anchor.new_ones((num_instance, num_instance), dtype=torch.bool)
            attn_mask[:num_free_instance, :num_free_instance] = False
            attn_mask[num_free_instance:, num_free_instance:] = dn_attn_mask

        anchor_embed = self.anchor_encoder(anchor)
        temp_anchor_embed = self.anchor_encoder(temp_anchor) if temp_anchor is not None else None

        prediction, classification, quality = [], [], []
        for i, op in enumerate(self.operation_order):
            layer = self.layers[i]
            if layer is None:
                continue
            if op == "temp_gnn":
                instance_feature = self.graph_model(
                    i,
                    instance_feature,
                    temp_instance_feature,
                    temp_instance_feature,
                    query_pos=anchor_embed,
                    key_pos=temp_anchor_embed,
                    attn_mask=attn_mask if temp_instance_feature is None else None,
                )
            elif op == "gnn":
                instance_feature = self.graph_model(
                    i, instance_feature, value=instance_feature, query_pos=anchor_embed, attn_mask=attn_mask
                )
            elif op in ("norm", "ffn"):
                instance_feature = layer(instance_feature)
            elif op == "deformable":
                instance_feature = layer(instance_feature, anchor, anchor_embed, feature_maps, metas)
            else:  # refine
                anchor, cls, qt = layer(
                    instance_feature, anchor, anchor_embed, time_interval=time_interval, return_cls=True
                )
                prediction.append(anchor)
                classification.append(cls)
                quality.append(qt)
                if len(prediction) == self.num_single_frame_decoder:
                    instance_feature, anchor = self.instance_bank.update(instance_feature, anchor, cls)
                    if dn_metas is not None and self.sampler.num_temp_dn_groups > 0 and dn_id_target is not None:
                        (
                            instance_feature,
                            anchor,
                            temp_dn_reg_target,
                            temp_dn_cls_target,
                            temp_valid_mask,
                            dn_id_target,
                        ) = self.sampler.update_dn(
                            instance_feature,
                            anchor,
                            dn_reg_target,
                            dn_cls_target,
                            valid_mask,
                            dn_id_target,
                            self.instance_bank.num_anchor,
                            self.instance_bank.mask,
                        )
                anchor_embed = self.anchor_encoder(anchor)
                if len(prediction) > self.num_single_frame_decoder and temp_anchor_embed is not None:
                    temp_anchor_embed = anchor_embed[:, : self.instance_bank.num_temp_instances]

        output = {}
        if dn_metas is not None:
            output.update(
                {
                    "dn_prediction": [x[:, num_free_instance:] for x in prediction],
                    "dn_classification": [x[:, num_free_instance:] for x in classification],
                    "dn_reg_target": dn_reg_target,
                    "dn_cls_target": dn_cls_target,
                    "dn_valid_mask": valid_mask,
                }
            )
            classification = [x[:, :num_free_instance] for x in classification]
            prediction = [x[:, :num_free_instance] for x in prediction]
            quality = [x[:, :num_free_instance] if x is not None else None for x in quality]
            if temp_dn_reg_target is not None:
                output.update(
                    {
                        "temp_dn_reg_target": temp_dn_reg_target,
                        "temp_dn_cls_target": temp_dn_cls_target,
                        "temp_dn_valid_mask": temp_valid_mask,
                        "dn_id_target": dn_id_target,
                    }
                )
                dn_cls_target = temp_dn_cls_target
                valid_mask = temp_valid_mask
            dn_instance_feature = instance_feature[:, num_free_instance:]
            dn_anchor = anchor[:, num_free_instance:]
            instance_feature = instance_feature[:, :num_free_instance]
            anchor_embed = anchor_embed[:, :num_free_instance]
            anchor = anchor[:, :num_free_instance]
            cls = cls[:, :num_free_instance]
            self.sampler.cache_dn(dn_instance_feature, dn_anchor, dn_cls_target, valid_mask, dn_id_target)
        output.update(
            {
                "classification": classification,
                "prediction": prediction,
                "quality": quality,
                "instance_feature": instance_feature,
                "anchor_embed": anchor_embed,
            }
        )
        self.instance_bank.cache(instance_feature, anchor, cls, metas, feature_maps)
        if self.with_instance_id:
            output["instance_id"] = self.instance_bank.get_instance_id(cls, anchor, self.decoder.score_threshold)
        return output

    @force_fp32(apply_to=("model_outs",))
    def loss(self, model_outs: dict, data: dict, feature_maps: Optional[List] = None) -> Dict[str, Tensor]:
        """Per-decoder-layer classification and regression losses (plus denoising losses if any).

        Args:
            model_outs: output of ``forward``.
            data: data dict holding ``gt_cls_key`` (list of [n_b] labels) and ``gt_reg_key`` (list of GT).
            feature_maps: unused (upstream's signature).
        Returns:
            {"<prefix>_loss_cls_<i>": ..., plus the regression loss module's keys}.
        """
        num_reg = len(self.reg_weights)
        output = {}
        for idx, (cls, reg, qt) in enumerate(
            zip(model_outs["classification"], model_outs["prediction"], model_outs["quality"])
        ):
            reg = reg[..., :num_reg]
            cls_target, reg_target, reg_weights = self.sampler.sample(
                cls, reg, data[self.gt_cls_key], data[self.gt_reg_key]
            )
            reg_target = reg_target[..., :num_reg]
            mask = ~torch.all(reg_target == 0, dim=-1)
            # clamp instead of Python max: same value, no host sync
            num_pos = reduce_mean(torch.sum(mask).to(dtype=reg.dtype)).clamp(min=1.0)
            if self.cls_threshold_to_reg > 0:
                mask = mask & (cls.max(dim=-1).values.sigmoid() > self.cls_threshold_to_reg)
            cls = cls.flatten(end_dim=1)
            cls_target = cls_target.flatten(end_dim=1)
            cls_loss = self.loss_cls(cls, cls_target, avg_factor=num_pos)

            mask = mask.reshape(-1)
            reg_weights = reg_weights * reg.new_tensor(self.reg_weights)
            reg_target = reg_target.flatten(end_dim=1)[mask]
            reg = reg.flatten(end_dim=1)[mask]
            reg_weights = reg_weights.flatten(end_dim=1)[mask]
            reg_target = torch.where(reg_target.isnan(), reg.new_tensor(0.0), reg_target)
            cls_target = cls_target[mask]
            if qt is not None:
                qt = qt.flatten(end_dim=1)[mask]
            reg_loss = self.loss_reg(
                reg,
                reg_target,
                weight=reg_weights,
                avg_factor=num_pos,
                prefix=f"{self.task_prefix}_",
                suffix=f"_{idx}",
                quality=qt,
                cls_target=cls_target,
            )
            output[f"{self.task_prefix}_loss_cls_{idx}"] = cls_loss
            output.update(reg_loss)

        if "dn_prediction" not in model_outs:
            return output

        dn_state = self.prepare_for_dn_loss(model_outs)
        for idx, (cls, reg) in enumerate(zip(model_outs["dn_classification"], model_outs["dn_prediction"])):
            if "temp_dn_valid_mask" in model_outs and idx == self.num_single_frame_decoder:
                dn_state = self.prepare_for_dn_loss(model_outs, prefix="temp_")
            dn_valid_mask, dn_cls_target, dn_reg_target, dn_pos_mask, reg_weights, num_dn_pos = dn_state
            cls_loss = self.loss_cls(cls.flatten(end_dim=1)[dn_valid_mask], dn_cls_target, avg_factor=num_dn_pos)
            reg_loss = self.loss_reg(
                reg.flatten(end_dim=1)[dn_valid_mask][dn_pos_mask][..., :num_reg],
                dn_reg_target,
                avg_factor=num_dn_pos,
                weight=reg_weights,
                prefix=f"{self.task_prefix}_",
                suffix=f"_dn_{idx}",
            )
            output[f"{self.task_prefix}_loss_cls_dn_{idx}"] = cls_loss
            output.update(reg_loss)
        return output

    def prepare_for_dn_loss(self, model_outs: dict, prefix: str = "") -> Tuple:
        """Flatten the denoising targets: (valid mask, cls target, reg target, positive mask, reg weights, num_pos)."""
        dn_valid_mask = model_outs[f"{prefix}dn_valid_mask"].flatten(end_dim=1)
        dn_cls_target = model_outs[f"{prefix}dn_cls_target"].flatten(end_dim=1)[dn_valid_mask]
        dn_reg_target = model_outs[f"{prefix}dn_reg_target"].flatten(end_dim=1)[dn_valid_mask][
            ..., : len(self.reg_weights)
        ]
        dn_pos_mask = dn_cls_target >= 0
        dn_reg_target = dn_reg_target[dn_pos_mask]
        reg_weights = dn_reg_target.new_tensor(self.reg_weights)[None].tile(dn_reg_target.shape[0], 1)
        num_dn_pos = reduce_mean(torch.sum(dn_valid_mask).to(dtype=reg_weights.dtype)).clamp(min=1.0)
        return dn_valid_mask, dn_cls_target, dn_reg_target, dn_pos_mask, reg_weights, num_dn_pos

    @force_fp32(apply_to=("model_outs",))
    def post_process(self, model_outs: dict, output_idx: int = -1) -> List[dict]:
        """Decode the last (or ``output_idx``) layer's predictions into per-sample result dicts."""
        return self.decoder.decode(
            model_outs["classification"],
            model_outs["prediction"],
            model_outs.get("instance_id"),
            model_outs.get("quality"),
            output_idx=output_idx,
        )
