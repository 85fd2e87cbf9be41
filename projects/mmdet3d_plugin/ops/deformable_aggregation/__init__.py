"""Deformable aggregation: one public function and its backend table.

Backends (``ops.set_backend('deformable_aggregation', name)`` or
``SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATION=name`` forces one):

| name      | module        | default for | notes                                         |
|-----------|---------------|-------------|-----------------------------------------------|
| reference | reference.py  | -           | plain PyTorch, autograd backward               |
| cpu       | cpu.py        | cpu         | compacts to in-image samples, manual backward |
| triton    | triton.py     | cuda        | Triton kernels, fp32 accumulation             |
| npu       | npu.py        | npu         | ``mx_driving.deformable_aggregation``         |
"""
from torch import Tensor

from .. import dispatch
from .grid_sample import grid_sample_aggregation

OP = "deformable_aggregation"


def _load_reference():
    from .reference import deformable_aggregation as impl

    return impl


def _load_cpu():
    from .cpu import deformable_aggregation as impl

    return impl


def _load_triton():
    from .triton import load

    return load()


def _load_npu():
    from .npu import load

    return load()


dispatch.register_op(
    OP,
    loaders={"reference": _load_reference, "cpu": _load_cpu, "triton": _load_triton, "npu": _load_npu},
    defaults={"cpu": "cpu", "cuda": "triton", "npu": "npu"},
)


def deformable_aggregation(
    mc_ms_feat: Tensor,
    spatial_shape: Tensor,
    scale_start_index: Tensor,
    sampling_location: Tensor,
    weights: Tensor,
) -> Tensor:
    """Sample flattened multi-camera, multi-level features at projected points and mix them per group.

    Upstream's five-tensor contract (model spec 6.2); every backend gives the same result and gradients
    for ``mc_ms_feat``, ``sampling_location`` and ``weights``.

    Args:
        mc_ms_feat: flattened features from ``feature_maps_format``, [B, F, C].
        spatial_shape: (h, w) per camera and level, int32/int64 [N, L, 2].
        scale_start_index: offset of each (camera, level) block along F, int32/int64 [N, L].
        sampling_location: normalised (u, v) = (x / W_img, y / H_img), [B, A, P, N, 2]; a sample counts
            only when 0 < u < 1 and 0 < v < 1.
        weights: fusion weights, [B, A, P, N, L, G]; channel c belongs to group c // (C / G).
    Returns:
        Aggregated features, [B, A, C]: fp32 (fp64 when an input is fp64).
    """
    _check_inputs(mc_ms_feat, spatial_shape, scale_start_index, sampling_location, weights)
    impl = dispatch.select_backend(OP, mc_ms_feat.device)
    return impl(mc_ms_feat, spatial_shape, scale_start_index, sampling_location, weights)


def _check_inputs(
    mc_ms_feat: Tensor, spatial_shape: Tensor, scale_start_index: Tensor, sampling_location: Tensor, weights: Tensor
) -> None:
    if mc_ms_feat.dim() != 3:
        raise ValueError(f"deformable_aggregation: mc_ms_feat must be [B, F, C], got {tuple(mc_ms_feat.shape)}.")
    if sampling_location.dim() != 5 or sampling_location.shape[-1] != 2:
        raise ValueError(
            f"deformable_aggregation: sampling_location must be [B, A, P, N, 2], got {tuple(sampling_location.shape)}."
        )
    batch, num_anchor, num_pts, num_cams = sampling_location.shape[:4]
    if weights.dim() != 6 or tuple(weights.shape[:4]) != (batch, num_anchor, num_pts, num_cams):
        raise ValueError(
            f"deformable_aggregation: weights must be [B, A, P, N, L, G] = [{batch}, {num_anchor}, {num_pts}, "
            f"{num_cams}, L, G], got {tuple(weights.shape)}."
        )
    num_levels, num_groups = weights.shape[-2:]
    if mc_ms_feat.shape[0] != batch or mc_ms_feat.shape[2] % num_groups:
        raise ValueError(
            f"deformable_aggregation: mc_ms_feat {tuple(mc_ms_feat.shape)} must have batch {batch} and channels "
            f"divisible by {num_groups} groups."
        )
    if tuple(spatial_shape.shape) != (num_cams, num_levels, 2) or tuple(scale_start_index.shape) != (
        num_cams,
        num_levels,
    ):
        raise ValueError(
            f"deformable_aggregation: spatial_shape must be [{num_cams}, {num_levels}, 2] and scale_start_index "
            f"[{num_cams}, {num_levels}], got {tuple(spatial_shape.shape)} and {tuple(scale_start_index.shape)}."
        )


__all__ = ["deformable_aggregation", "grid_sample_aggregation", "OP"]
