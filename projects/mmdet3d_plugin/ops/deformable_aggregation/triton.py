"""CUDA backend: Triton kernels for forward and backward (fp32 accumulation), same contract as ``reference``.

Also runs on CPU tensors under ``TRITON_INTERPRET=1`` (the tests use that; set it before the first load).
"""
import importlib
from typing import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .reference import compute_dtype

_KERNELS = None


def load() -> Callable:
    """Import the kernels (and triton) now; raise one clear line when triton is missing."""
    global _KERNELS
    if _KERNELS is None:
        try:
            _KERNELS = importlib.import_module(__name__ + "_kernels")
        except ImportError as exc:
            raise RuntimeError(
                f"ops.deformable_aggregation: no Triton kernel (triton not importable: {exc}); install triton or "
                "call ops.set_backend('deformable_aggregation', 'reference')."
            ) from exc
    return deformable_aggregation


def deformable_aggregation(
    mc_ms_feat: Tensor,
    spatial_shape: Tensor,
    scale_start_index: Tensor,
    sampling_location: Tensor,
    weights: Tensor,
) -> Tensor:
    """Same arguments, result and gradients as ``reference.deformable_aggregation`` ([B, A, C])."""
    load()
    return _TritonAggregation.apply(mc_ms_feat, spatial_shape, scale_start_index, sampling_location, weights)


def _blocks(channels: int, groups: int) -> dict:
    group_dim = channels // groups
    return dict(
        NUM_CHANNELS=channels,
        NUM_GROUPS=groups,
        GROUP_DIM=group_dim,
        BLOCK_G=max(1, 1 << (groups - 1).bit_length()),
        BLOCK_CG=max(1, 1 << (group_dim - 1).bit_length()),
    )


class _TritonAggregation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats, spatial_shape, scale_start_index, location, weights):
        out_dtype = compute_dtype(feats, location, weights)
        ctx.input_dtypes = (feats.dtype, location.dtype, weights.dtype)
        feats = feats.float().contiguous()
        location = location.float().contiguous()
        weights = weights.float().contiguous()
        spatial_shape = spatial_shape.to(device=feats.device, dtype=torch.int32).contiguous()
        scale_start_index = scale_start_index.to(device=feats.device, dtype=torch.int32).contiguous()
        batch, num_feat, channels = feats.shape
        num_anchor, num_pts, num_cams = location.shape[1:4]
        num_levels, num_groups = weights.shape[-2:]
        output = feats.new_empty(batch, num_anchor, channels)
        if output.numel():
            _KERNELS.forward_kernel[(batch * num_anchor,)](
                feats,
                spatial_shape,
                scale_start_index,
                location,
                weights,
                output,
                num_feat,
                num_anchor,
                num_pts,
                num_cams,
                num_levels,
                **_blocks(channels, num_groups),
            )
        ctx.save_for_backward(feats, spatial_shape, scale_start_index, location, weights)
        return output.to(out_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        feats, spatial_shape, scale_start_index, location, weights = ctx.saved_tensors
        batch, num_feat, channels = feats.shape
        num_anchor, num_pts, num_cams = location.shape[1:4]
        num_levels, num_groups = weights.shape[-2:]
        grad_feats = torch.zeros_like(feats)
        grad_location = torch.zeros_like(location)
        grad_weights = torch.zeros_like(weights)
        num_samples = batch * num_anchor * num_pts * num_cams
        if num_samples and channels:
            _KERNELS.backward_kernel[(num_samples,)](
                feats,
                spatial_shape,
                scale_start_index,
                location,
                weights,
                grad_output.float().contiguous(),
                grad_feats,
                grad_location,
                grad_weights,
                num_feat,
                num_anchor,
                num_pts,
                num_cams,
                num_levels,
                **_blocks(channels, num_groups),
            )
        feat_dtype, location_dtype, weight_dtype = ctx.input_dtypes
        return (
            grad_feats.to(feat_dtype),
            None,
            None,
            grad_location.to(location_dtype),
            grad_weights.to(weight_dtype),
        )
