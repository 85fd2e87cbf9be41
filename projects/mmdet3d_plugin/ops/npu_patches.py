"""Start-up patches of third-party code for Ascend NPU (no-op on every other backend).

Applies mx_driving's generic built-in patches (npu spec 4.3), the same set the DrivingSDK port enables:

| target module                    | patches                          | effect                                      |
|----------------------------------|----------------------------------|---------------------------------------------|
| torch                            | index, batch_matmul              | bool-mask indexing via masked_select;       |
|                                  |                                  | [..,4,4] @ [..,4,1] via npu_batch_matmul     |
| numpy                            | numpy_type                       | numpy.bool/float/int aliases if missing     |
| mmcv                             | stream, ddp                      | mmcv DDP wrapper and scatter work on NPU    |
| mmdet                            | resnet_add_relu, resnet_maxpool  | fused residual add+ReLU, forward-only pool  |

The target modules are the top-level packages, as DrivingSDK's SparseDrive registers them: the mmcv 1.x
patches of mx_driving 7.x take ``mmcv`` / ``mmdet`` and reach ``mmcv.parallel`` / ``mmdet.models.backbones``
themselves (given a submodule they fail with AttributeError).

Before that it imports ``torch_npu.contrib.transfer_to_npu`` (maps the ``cuda`` calls inside mmcv/mmdet to
NPU) and keeps plain ND tensor formats. So the model code needs no explicit npu_add_relu / npu_max_pool2d /
npu_batch_matmul calls.
"""
import importlib
import logging
from typing import Optional

import torch

from ..device import is_npu

logger = logging.getLogger(__name__)

BUILTIN_PATCHES = {
    "torch": ("index", "batch_matmul"),
    "numpy": ("numpy_type",),
    "mmcv": ("stream", "ddp"),
    "mmdet": ("resnet_add_relu", "resnet_maxpool"),
}

_APPLIED = False


def apply_npu_patches(brake_at: Optional[int] = None) -> bool:
    """Apply the patches once per process when the backend is NPU.

    Args:
        brake_at: stop training (exit 0) after this many iterations (the performance runs' brake).
    Returns:
        True when the patches are (now or already) applied, False on a non-NPU backend.
    """
    global _APPLIED
    if not is_npu():
        return False
    if _APPLIED:
        return True
    try:
        importlib.import_module("torch_npu.contrib.transfer_to_npu")
        patcher_module = importlib.import_module("mx_driving.patcher")
    except ImportError as exc:
        raise RuntimeError(
            f"ops.apply_npu_patches: torch_npu / mx_driving not importable ({exc}); install DrivingSDK or "
            "unset SPARSEDRIVE_DEVICE=npu."
        ) from exc
    builder = patcher_module.PatcherBuilder()
    for module_name, names in BUILTIN_PATCHES.items():
        builder.add_module_patch(module_name, *(patcher_module.Patch(getattr(patcher_module, n)) for n in names))
    if brake_at is not None:
        builder.brake_at(brake_at)
    torch.npu.config.allow_internal_format = False
    builder.build(allow_internal_format=False).apply()
    _APPLIED = True
    logger.info("ops.apply_npu_patches: applied %s", ", ".join(f"{m}: {'/'.join(n)}" for m, n in BUILTIN_PATCHES.items()))
    return True
