"""Deformable aggregation in plain PyTorch: the definition of correct for every other backend.

Semantics of upstream's CUDA kernel (model spec 6.2): a sample (anchor a, point p, camera n) is used
only when its normalised location lies strictly inside the image (0 < u < 1 and 0 < v < 1). On level l
it reads pixel position (u * w_l - 0.5, v * h_l - 0.5) bilinearly, neighbours outside the map
counting as zero, and adds ``weights[b, a, p, n, l, g] * value`` to the channels of group g.
Autograd supplies the backward; each (camera, level) read is checkpointed (recomputed in the backward)
so the saved tensors stay small enough for the map head's 300 points.
"""
from typing import Tuple

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """fp32 for fp32/fp16/bf16 inputs (as upstream's kernel), fp64 when any input is fp64."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def deformable_aggregation(
    mc_ms_feat: Tensor,
    spatial_shape: Tensor,
    scale_start_index: Tensor,
    sampling_location: Tensor,
    weights: Tensor,
) -> Tensor:
    """Sample flattened multi-camera, multi-level features at projected points and mix them per group.

    Args:
        mc_ms_feat: flattened features, [B, F, C] (F = sum over cameras and levels of h * w).
        spatial_shape: (h, w) of every camera and level, integer [N, L, 2].
        scale_start_index: offset of every (camera, level) block along F, integer [N, L].
        sampling_location: normalised (u, v) = (x / W_img, y / H_img), [B, A, P, N, 2].
        weights: fusion weight of every point, camera, level and channel group, [B, A, P, N, L, G].
    Returns:
        Aggregated features, [B, A, C], in ``compute_dtype`` of the inputs.
    """
    dtype = compute_dtype(mc_ms_feat, sampling_location, weights)
    feats = mc_ms_feat.to(dtype)
    location = sampling_location.to(dtype)
    weights = weights.to(dtype)
    batch, _, channels = feats.shape
    num_anchor, num_pts, num_cams = location.shape[1:4]
    num_levels, num_groups = weights.shape[-2:]

    u, v = location.unbind(-1)
    inside = (u > 0) & (u < 1) & (v > 0) & (v < 1)
    shapes = spatial_shape.tolist()
    starts = scale_start_index.tolist()
    output = feats.new_zeros(batch, num_anchor, num_groups, channels // num_groups)
    for cam in range(num_cams):
        for level in range(num_levels):
            height, width = shapes[cam][level]
            sampled = checkpoint(
                bilinear_sample,
                feats,
                starts[cam][level],
                (height, width),
                u[..., cam],
                v[..., cam],
                inside[..., cam],
                use_reentrant=False,
            )
            grouped = sampled.unflatten(-1, (num_groups, -1))
            output = output + (grouped * weights[:, :, :, cam, level, :, None]).sum(dim=2)
    return output.flatten(2)


def bilinear_sample(
    feats: Tensor, start: int, size: Tuple[int, int], u: Tensor, v: Tensor, inside: Tensor
) -> Tensor:
    """Bilinear read of one (camera, level) block with zero padding and half-pixel centres.

    Args:
        feats: flattened features, [B, F, C]; the block holds h * w rows from ``start`` (row-major).
        size: (h, w) of the block.
        u, v: normalised locations, [B, A, P]; inside: samples to keep, bool [B, A, P].
    Returns:
        Sampled features, zero where ``inside`` is False, [B, A, P, C].
    """
    height, width = size
    batch, num_feat, channels = feats.shape
    rows = feats.reshape(batch * num_feat, channels)
    image_offset = (torch.arange(batch, device=feats.device) * num_feat).view(batch, 1, 1)
    x = u * width - 0.5
    y = v * height - 0.5
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = x - x0
    fy = y - y0
    x0 = torch.where(inside, x0, torch.zeros_like(x0)).long()
    y0 = torch.where(inside, y0, torch.zeros_like(y0)).long()
    result = 0
    for dy, weight_y in ((0, 1 - fy), (1, fy)):
        for dx, weight_x in ((0, 1 - fx), (1, fx)):
            xi = x0 + dx
            yi = y0 + dy
            valid = inside & (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            index = image_offset + start + yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)
            value = rows.index_select(0, index.flatten()).view(index.shape + (channels,))
            coefficient = torch.where(valid, weight_x * weight_y, torch.zeros_like(weight_x))
            result = result + value * coefficient[..., None]
    return result
