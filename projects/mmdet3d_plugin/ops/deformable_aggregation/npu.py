"""NPU backend: ``mx_driving.deformable_aggregation`` (DrivingSDK), same contract as ``reference``.

The kernel wants fp32 ``[bs, num_feat, c]`` features, int32 ``[cam, scale, 2]`` / ``[cam, scale]`` index
tensors, fp32 ``[bs, anchor, pts, cam, 2]`` locations (first component = width axis, as upstream's CUDA
kernel) and fp32 ``[bs, anchor, pts, cam, scale, group]`` weights, all contiguous. Its documented limits
(npu spec 5.1) are checked first; shapes outside them (e.g. reduced test configs) run the reference
instead, with one warning.
"""
import importlib
import logging
from typing import Callable, Optional

from torch import Tensor

from .reference import compute_dtype
from .reference import deformable_aggregation as reference_aggregation

logger = logging.getLogger(__name__)

MAX_BATCH, MAX_CHANNELS, MAX_CAMS, MAX_LEVELS, MAX_ANCHORS, MAX_PTS = 128, 256, 6, 4, 2048, 2048
REQUIRED_GROUPS, GROUP_DIM_MULTIPLE, MAX_ELEMENTS = 8, 8, 150_000_000

_KERNEL: Optional[Callable] = None
_WARNED = set()


def load() -> Callable:
    """Import mx_driving now; raise one clear line when it is missing."""
    global _KERNEL
    if _KERNEL is None:
        try:
            _KERNEL = importlib.import_module("mx_driving").deformable_aggregation
        except (ImportError, AttributeError) as exc:
            raise RuntimeError(
                f"ops.deformable_aggregation: no NPU kernel (mx_driving not importable: {exc}); install mx_driving "
                "(DrivingSDK) or call ops.set_backend('deformable_aggregation', 'reference')."
            ) from exc
    return deformable_aggregation


def unsupported_reason(mc_ms_feat: Tensor, sampling_location: Tensor, weights: Tensor) -> Optional[str]:
    """Why the NPU kernel cannot take these shapes (None when it can)."""
    batch, _, channels = mc_ms_feat.shape
    num_anchor, num_pts, num_cams = sampling_location.shape[1:4]
    num_levels, num_groups = weights.shape[-2:]
    group_dim = channels // max(num_groups, 1)
    checks = [
        (batch <= MAX_BATCH, f"batch {batch} > {MAX_BATCH}"),
        (channels <= MAX_CHANNELS, f"channels {channels} > {MAX_CHANNELS}"),
        (num_groups == REQUIRED_GROUPS, f"groups {num_groups} != {REQUIRED_GROUPS}"),
        (group_dim % GROUP_DIM_MULTIPLE == 0, f"channels per group {group_dim} not a multiple of {GROUP_DIM_MULTIPLE}"),
        (num_cams <= MAX_CAMS, f"cameras {num_cams} > {MAX_CAMS}"),
        (num_levels <= MAX_LEVELS, f"levels {num_levels} > {MAX_LEVELS}"),
        (num_anchor <= MAX_ANCHORS, f"anchors {num_anchor} > {MAX_ANCHORS}"),
        (num_pts <= MAX_PTS, f"points {num_pts} > {MAX_PTS}"),
        (mc_ms_feat.numel() > 0 and weights.numel() > 0, "empty features or weights"),
        (max(t.numel() for t in (mc_ms_feat, sampling_location, weights)) <= MAX_ELEMENTS, "input too large"),
    ]
    failed = [reason for ok, reason in checks if not ok]
    return ", ".join(failed) or None


def deformable_aggregation(
    mc_ms_feat: Tensor,
    spatial_shape: Tensor,
    scale_start_index: Tensor,
    sampling_location: Tensor,
    weights: Tensor,
) -> Tensor:
    """Same arguments, result and gradients as ``reference.deformable_aggregation`` ([B, A, C])."""
    reason = unsupported_reason(mc_ms_feat, sampling_location, weights)
    if reason is not None:
        if reason not in _WARNED:
            _WARNED.add(reason)
            logger.warning("ops.deformable_aggregation: NPU kernel limits exceeded (%s); using the reference.", reason)
        return reference_aggregation(mc_ms_feat, spatial_shape, scale_start_index, sampling_location, weights)
    out_dtype = compute_dtype(mc_ms_feat, sampling_location, weights)
    load()
    output = _KERNEL(
        mc_ms_feat.float().contiguous(),
        spatial_shape.int().contiguous(),
        scale_start_index.int().contiguous(),
        sampling_location.float().contiguous(),
        weights.float().contiguous(),
    )
    return output.to(out_dtype)
