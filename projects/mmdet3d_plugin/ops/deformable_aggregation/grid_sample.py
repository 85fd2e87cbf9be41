"""Upstream's pure-PyTorch fallback (``use_deformable_func=False``): one ``grid_sample`` per level over all cameras.

Differs from the kernel semantics only at the border: ``grid_sample`` also interpolates samples slightly
outside the image (a sample just outside still touches the border pixels), where the kernel drops every
sample with u or v outside the open interval (0, 1).
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def grid_sample_aggregation(feature_maps: Sequence[Tensor], sampling_location: Tensor, weights: Tensor) -> Tensor:
    """Sample per-camera feature maps with ``grid_sample`` and mix them per group.

    Args:
        feature_maps: L maps [B, N, C, h_l, w_l] (the unflattened features).
        sampling_location: normalised (u, v), [B, A, P, N, 2].
        weights: fusion weights, [B, A, P, N, L, G].
    Returns:
        Aggregated features, [B, A, C].
    """
    batch, num_anchor, num_pts, num_cams = sampling_location.shape[:4]
    num_groups = weights.shape[-1]
    grid = (sampling_location * 2 - 1).permute(0, 3, 1, 2, 4).flatten(0, 1)  # [B*N, A, P, 2]
    output = 0
    for level, feature in enumerate(feature_maps):
        channels = feature.shape[2]
        sampled = F.grid_sample(feature.flatten(0, 1), grid.to(feature.dtype), align_corners=False)
        sampled = sampled.view(batch, num_cams, num_groups, channels // num_groups, num_anchor, num_pts)
        output = output + torch.einsum("bngcap,bapng->bagc", sampled, weights[..., level, :].to(sampled.dtype))
    return output.flatten(2)
