"""Device, distributed and optimiser set-up of an upstream SparseDrive checkout, through the backend layer.

Exists only in the tree that ``SparseDrive.patch`` produces: upstream's ``tools/train.py``, ``tools/test.py``
and ``apis/mmdet_train.py`` call these instead of their CUDA-only set-up, so one checkout trains on Ascend
NPU (hccl, fused AdamW + clip), NVIDIA GPU (nccl, fused AdamW) and CPU (gloo).
"""
import os
import sys

import torch
from mmcv.runner import Hook, wrap_fp16_model

from .. import device
from ..device import supports_fp16
from ..ops.npu_patches import apply_npu_patches
from .dist import init_distributed
from .optimizer import SparseDriveOptimizerHook, build_optimizer
from .parallel import wrap_model

STOP_AT_ITER_ENV = "SPARSEDRIVE_STOP_AT_ITER"

__all__ = [
    "build_optimizer",
    "build_optimizer_hook",
    "init_distributed",
    "setup_backend",
    "supports_fp16",
    "wrap_model",
]


def setup_backend() -> str:
    """Pick the backend once; on NPU apply mx_driving's patches (``$SPARSEDRIVE_STOP_AT_ITER`` brakes there).

    A wrong ``SPARSEDRIVE_DEVICE`` or a missing accelerator package ends the process with one line.
    """
    try:
        backend = device.get_backend()
        if backend == "npu":
            stop_at = os.environ.get(STOP_AT_ITER_ENV)
            apply_npu_patches(brake_at=int(stop_at) if stop_at else None)
    except (ValueError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    return backend


def build_optimizer_hook(model: torch.nn.Module, cfg) -> Hook:
    """Backward / clip / step hook for ``cfg.optimizer_config`` and ``cfg.fp16``.

    ``fp16 = dict(loss_scale=...)`` enables mmcv's fp16 modules and a static loss scale on NPU and CUDA;
    on CPU the model trains in fp32. Only the optimiser's gradients are zeroed, as the NPU fused AdamW needs.
    """
    fp16_cfg = cfg.get("fp16", None)
    use_fp16 = fp16_cfg is not None and supports_fp16()
    if use_fp16:
        wrap_fp16_model(model)
    return SparseDriveOptimizerHook(
        grad_clip=cfg.optimizer_config.get("grad_clip"), loss_scale=fp16_cfg["loss_scale"] if use_fp16 else None
    )
