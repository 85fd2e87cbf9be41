"""Optimiser and its hook: upstream's AdamW + per-module lr multipliers, on each backend's fastest kernels.

The config keeps upstream's keys (``optimizer=dict(type="AdamW", lr, weight_decay, paramwise_cfg)``,
``optimizer_config=dict(grad_clip=dict(max_norm=25, norm_type=2))``, ``fp16=dict(loss_scale=32.0)``); only
the kernels differ by backend (``ops.optim``): fused AdamW on CUDA / NPU, fused gradient clipping on NPU.
"""
import copy
import math
from typing import Optional

import torch
from mmcv.runner import DefaultOptimizerConstructor, Hook

from .. import device
from ..ops import optim as fused


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """Param groups as mmcv builds them (``paramwise_cfg`` lr multipliers), then the backend's AdamW."""
    cfg = copy.deepcopy(dict(cfg))
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    constructor = DefaultOptimizerConstructor(cfg, paramwise_cfg)
    model = getattr(model, "module", model)
    if cfg["type"] != "AdamW":
        return constructor(model)
    param_groups: list = []
    constructor.add_params(param_groups, model)
    cfg.pop("type")
    return fused.build_adamw(param_groups, **cfg)


class NonFiniteLossError(RuntimeError):
    """The training loss is inf or nan; raised before the step, so the weights are still the last finite ones."""


def check_finite_loss(log_vars: dict, iteration: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the non-finite terms when ``log_vars['loss']`` is inf / nan.

    ``log_vars`` are the floats the detector logs; under distributed training mmdet averages them over all
    processes first, so every process sees the same verdict and stops together.
    """
    loss = log_vars.get("loss")
    if loss is None or math.isfinite(loss):
        return
    terms = [key for key, value in log_vars.items() if key != "loss" and not math.isfinite(value)]
    raise NonFiniteLossError(
        f"iteration {iteration}: the training loss is {loss} (non-finite terms: {', '.join(terms) or 'none'}); "
        "stopped before the optimiser step. Lower optimizer.lr or optimizer_config.grad_clip.max_norm, check the "
        "data, then resume from the last checkpoint (--resume-from auto).")


class SparseDriveOptimizerHook(Hook):
    """Backward, clip, step, for fp32 and mixed precision alike.

    Mixed precision follows mmcv's ``Fp16OptimizerHook`` with a float ``loss_scale``: a static scale
    (the scaler is reset to it after every step; steps with inf/nan gradients are skipped). Only the
    optimiser's ``zero_grad`` runs (never ``model.zero_grad``), which a fused optimiser's flat gradient
    buffer needs.

    Args:
        grad_clip: ``dict(max_norm, norm_type)`` or None.
        loss_scale: static loss scale for fp16, or None for fp32 training.
    """

    def __init__(self, grad_clip: Optional[dict] = None, loss_scale: Optional[float] = None) -> None:
        self.grad_clip = grad_clip
        self.loss_scale = loss_scale
        self.scaler = None

    def before_run(self, runner) -> None:
        if self.loss_scale is None:
            return
        self.scaler = getattr(torch, device.get_backend()).amp.GradScaler(init_scale=self.loss_scale)
        saved = (runner.meta or {}).get("fp16", {}).get("loss_scaler")
        if saved is not None:
            self.scaler.load_state_dict(saved)

    def after_train_iter(self, runner) -> None:
        # a nan step would silently poison every later iteration and checkpoint (fp16 overflows show up in
        # the gradients, which the scaler skips, not in the loss)
        check_finite_loss(runner.outputs["log_vars"], runner.iter + 1)
        optimizer = runner.optimizer
        optimizer.zero_grad()
        loss = runner.outputs["loss"]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        if self.grad_clip is not None:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if params:
                grad_norm = fused.clip_grad_norm(params, optimizer=optimizer, **self.grad_clip)
                runner.log_buffer.update({"grad_norm": float(grad_norm)}, runner.outputs["num_samples"])
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update(self.loss_scale)
            runner.meta.setdefault("fp16", {})["loss_scaler"] = self.scaler.state_dict()
        else:
            optimizer.step()
