"""Pack multi-camera, multi-level feature maps into the flat layout deformable aggregation reads, and back."""
from typing import List, Sequence, Union

import torch
from torch import Tensor

FeatureTriple = List[Tensor]


def feature_maps_format(
    feature_maps: Sequence,
    inverse: bool = False,
) -> Union[FeatureTriple, List[List[Tensor]]]:
    """Flatten per-level camera maps into ``[col_feats, spatial_shape, scale_start_index]`` (or undo it).

    Forward (``inverse=False``):
        feature_maps: L maps ``[B, N, C, h_l, w_l]``; or a list of such lists (camera groups with
            different image sizes), which are packed one after the other along the flat axis.
    Returns:
        col_feats ``[B, N * sum_l(h_l * w_l), C]``: camera-major, then level, then row-major pixel
        (index ``y * w + x``), channel-last; spatial_shape int64 ``[N, L, 2]`` holding (h, w);
        scale_start_index int64 ``[N, L]``: offset of each (camera, level) block in the flat axis.

    Inverse (``inverse=True``):
        feature_maps: the triple above.
    Returns:
        One list per run of consecutive cameras with identical shapes, each holding L maps
        ``[B, n_cams_in_run, C, h_l, w_l]`` (with equal cameras: ``result[0][l]`` is level l of all N).
    """
    if inverse:
        return _unflatten(*feature_maps)
    if isinstance(feature_maps[0], (list, tuple)):
        parts = [feature_maps_format(group) for group in feature_maps]
        col_feats = torch.cat([part[0] for part in parts], dim=1)
        spatial_shape = torch.cat([part[1] for part in parts], dim=0)
        # Upstream concatenates the per-group offsets without shifting them (every group restarts at 0),
        # which points later groups at the first group's features; SparseDrive never has several groups.
        offsets, starts = 0, []
        for part in parts:
            starts.append(part[2] + offsets)
            offsets += part[0].shape[1]
        return [col_feats, spatial_shape, torch.cat(starts, dim=0)]

    batch, num_cams, channels = feature_maps[0].shape[:3]
    col_feats = torch.cat([feat.reshape(batch, num_cams, channels, -1) for feat in feature_maps], dim=-1)
    col_feats = col_feats.permute(0, 1, 3, 2).flatten(1, 2)
    shapes = [list(feat.shape[-2:]) for feat in feature_maps]
    spatial_shape = torch.tensor([shapes] * num_cams, dtype=torch.int64, device=col_feats.device)
    sizes = (spatial_shape[..., 0] * spatial_shape[..., 1]).flatten()
    scale_start_index = (torch.cumsum(sizes, dim=0) - sizes).reshape(num_cams, -1)
    return [col_feats, spatial_shape, scale_start_index]


def _unflatten(col_feats: Tensor, spatial_shape: Tensor, scale_start_index: Tensor) -> List[List[Tensor]]:
    shapes = spatial_shape.tolist()
    runs: List[List[int]] = []
    for cam, cam_shapes in enumerate(shapes):
        if runs and shapes[runs[-1][0]] == cam_shapes:
            runs[-1].append(cam)
        else:
            runs.append([cam])

    batch, _, channels = col_feats.shape
    result, start = [], 0
    for cams in runs:
        levels = shapes[cams[0]]
        per_cam = sum(h * w for h, w in levels)
        block = col_feats[:, start : start + per_cam * len(cams)].unflatten(1, (len(cams), per_cam))
        maps = []
        for chunk, (h, w) in zip(block.split([h * w for h, w in levels], dim=2), levels):
            maps.append(chunk.unflatten(2, (h, w)).permute(0, 1, 4, 2, 3))
        result.append(maps)
        start += per_cam * len(cams)
    return result
