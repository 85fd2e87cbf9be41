"""The one place that decides which backend runs: Ascend NPU, CUDA GPU or CPU.

Every other module asks here instead of probing devices itself. The choice is made once per process:
``SPARSEDRIVE_DEVICE`` (``npu`` / ``cuda`` / ``cpu``) forces a backend; otherwise ``npu`` when torch_npu
imports and reports a device, else ``cuda`` when available, else ``cpu``.
"""
import functools
import importlib
import logging
import os
from typing import Optional

import torch

BACKENDS = ("npu", "cuda", "cpu")
DIST_BACKENDS = {"npu": "hccl", "cuda": "nccl", "cpu": "gloo"}
ENV_VAR = "SPARSEDRIVE_DEVICE"
WITH_CP_ENV_VAR = "SPARSEDRIVE_WITH_CP"
CHANNELS_LAST_ENV_VAR = "SPARSEDRIVE_CHANNELS_LAST"

logger = logging.getLogger(__name__)


def _npu_available() -> bool:
    try:
        importlib.import_module("torch_npu")
    except ImportError:
        return False
    npu = getattr(torch, "npu", None)
    return bool(npu is not None and npu.is_available() and npu.device_count() > 0)


@functools.lru_cache(maxsize=None)
def get_backend() -> str:
    """Return ``'npu'``, ``'cuda'`` or ``'cpu'``; the environment override wins, unknown values are refused."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{ENV_VAR}={forced!r} is not a backend; use one of {', '.join(BACKENDS)}.")
        if forced == "npu" and not _npu_available():
            try:
                importlib.import_module("torch_npu")
                reason = "torch_npu reports no NPU device"
            except ImportError as exc:
                reason = f"torch_npu is not importable ({exc})"
            raise RuntimeError(f"{ENV_VAR}=npu but {reason}; install torch_npu / check the driver, or unset it.")
        if forced == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"{ENV_VAR}=cuda but torch.cuda.is_available() is False (no GPU or no CUDA build of torch); "
                "unset it or fix CUDA."
            )
        chosen = forced
    elif _npu_available():
        chosen = "npu"
    elif torch.cuda.is_available():
        chosen = "cuda"
    else:
        chosen = "cpu"
    logger.info("backend: %s", chosen)
    return chosen


def reset_backend_cache() -> None:
    """Forget the cached choice (tests that change ``SPARSEDRIVE_DEVICE``)."""
    get_backend.cache_clear()


def is_npu() -> bool:
    return get_backend() == "npu"


def is_cuda() -> bool:
    return get_backend() == "cuda"


def get_device(local_rank: Optional[int] = None) -> torch.device:
    """The torch device of this process (``local_rank`` defaults to ``$LOCAL_RANK`` or 0)."""
    backend = get_backend()
    if backend == "cpu":
        return torch.device("cpu")
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return torch.device(backend, local_rank)


def set_device(local_rank: Optional[int] = None) -> torch.device:
    """Bind this process to its accelerator (no-op on CPU) and return the device."""
    device = get_device(local_rank)
    if device.type != "cpu":
        getattr(torch, device.type).set_device(device)
    return device


def get_dist_backend() -> str:
    """torch.distributed backend: hccl on NPU, nccl on CUDA, gloo on CPU."""
    return DIST_BACKENDS[get_backend()]


def device_count() -> int:
    backend = get_backend()
    if backend == "cpu":
        return 1
    return getattr(torch, backend).device_count()


def supports_fp16() -> bool:
    """Mixed precision (fp16 autocast + loss scaling) only where the hardware has fast fp16."""
    return get_backend() in ("npu", "cuda")


def activation_checkpointing(configured: bool) -> bool:
    """Whether the image backbone recomputes its activations during backward (its config's ``with_cp``).

    Checkpointing trades a second backbone forward per step for accelerator memory; on CPU the
    activations live in host RAM and the recompute only costs time, so it is off there and as
    configured on accelerators. ``SPARSEDRIVE_WITH_CP=0|1`` forces it either way.
    """
    forced = _flag(WITH_CP_ENV_VAR)
    if forced is not None:
        return forced
    return configured and get_backend() != "cpu"


def channels_last() -> bool:
    """Whether the image backbone and neck run on channels-last (NHWC) activations.

    On CPU oneDNN's NHWC convolutions are faster for ResNet-50 + FPN, forward and backward (measured,
    see the README's Results); off on CUDA and NPU, where it has not been measured.
    ``SPARSEDRIVE_CHANNELS_LAST=0|1`` forces it either way.
    """
    forced = _flag(CHANNELS_LAST_ENV_VAR)
    if forced is not None:
        return forced
    return get_backend() == "cpu"


def _flag(name: str) -> Optional[bool]:
    """``True`` / ``False`` for an environment variable set to 1 / 0, None when unset; other values are refused."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if value not in ("0", "1"):
        raise ValueError(f"{name}={value!r}: use 1 (on) or 0 (off), or unset it for the backend's default.")
    return value == "1"


def synchronize() -> None:
    """Wait for queued device work (for timing); no-op on CPU."""
    backend = get_backend()
    if backend != "cpu":
        getattr(torch, backend).synchronize()


def max_memory_allocated() -> int:
    """Peak device memory in bytes (0 on CPU, where the process RSS is the measure)."""
    backend = get_backend()
    if backend == "cpu":
        return 0
    return getattr(torch, backend).max_memory_allocated()
