"""Optimiser and optimiser hooks: upstream's AdamW + per-module lr multipliers, on each backend's fastest kernel.

The config keeps upstream's keys (``optimizer=dict(type="AdamW", lr, weight_decay, paramwise_cfg)``,
``optimizer_config=dict(grad_clip=dict(max_norm=25, norm_type=2))``, ``fp16=dict(loss_scale=32.0)``); only
the kernels differ: fused AdamW on CUDA / NPU, fused gradient clipping on NPU (``ops.optim``).
"""
import copy
from typing import Optional

import torch
from mmcv.runner import DefaultOptimizerConstructor, Fp16OptimizerHook, OptimizerHook

from ..ops import optim as fused


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """Param groups as mmcv builds them (``paramwise_cfg`` lr multipliers), then the backend's AdamW."""
    cfg = copy.deepcopy(cfg)
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    constructor = DefaultOptimizerConstructor(cfg, paramwise_cfg)
    if cfg["type"] != "AdamW":
        return constructor(model)
    model = getattr(model, "module", model)
    param_groups: list = []
    constructor.add_params(param_groups, model)
    cfg.pop("type")
    return fused.build_adamw(param_groups, **cfg)


class _FusedClipMixin:
    """Gradient clipping through ``ops.optim.clip_grad_norm`` (fused on NPU), logging the norm as upstream."""

    grad_clip: Optional[dict]

    def clip_grads(self, params):
        params = [p for p in params if p.requires_grad and p.grad is not None]
        if not params:
            return None
        return fused.clip_grad_norm(params, **self.grad_clip)


class ClipGradOptimizerHook(_FusedClipMixin, OptimizerHook):
    """fp32 training step: backward, clip, step."""


class ClipGradFp16OptimizerHook(_FusedClipMixin, Fp16OptimizerHook):
    """Mixed precision with upstream's static loss scale, then the same clipping."""


def build_optimizer_hook(optimizer_config: dict, fp16_cfg: Optional[dict], use_fp16: bool, distributed: bool):
    """fp16 only where the backend supports it (``device.supports_fp16``); CPU trains in fp32."""
    optimizer_config = dict(optimizer_config or {})
    optimizer_config.pop("type", None)
    if fp16_cfg is not None and use_fp16:
        return ClipGradFp16OptimizerHook(**optimizer_config, **fp16_cfg, distributed=distributed)
    return ClipGradOptimizerHook(**optimizer_config)

