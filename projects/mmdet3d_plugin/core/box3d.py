"""Layout of the 3D box state shared by anchors, predictions, targets and the decoder.

An encoded box (anchor or prediction) is an 11-vector in the LiDAR frame:
``[x, y, z, log w, log l, log h, sin yaw, cos yaw, vx, vy, vz]`` (meters, m/s). A decoded box replaces the
log sizes by sizes and the (sin, cos) pair by the yaw angle, so index 6 (``YAW``) is the angle and the
velocity starts at index 7. W is the extent along the box's heading, L across it, H vertical.
"""
import torch
from torch import Tensor

X, Y, Z, W, L, H, SIN_YAW, COS_YAW, VX, VY, VZ = range(11)  # encoded state
YAW = 6  # decoded state: yaw angle in radians, velocity follows at YAW + 1
CNS, YNS = 0, 1  # quality vector: centerness logit, yawness logit

__all__ = [
    "X", "Y", "Z", "W", "L", "H", "SIN_YAW", "COS_YAW", "VX", "VY", "VZ", "YAW", "CNS", "YNS",
    "encode_box", "decode_box",
]


def encode_box(box: Tensor) -> Tensor:
    """Turn decoded boxes into the regression state.

    Args:
        box: ``[..., 7 + V]`` boxes ``[x, y, z, w, l, h, yaw, v...]`` (meters, radians, m/s), V velocity dims.
    Returns:
        ``[..., 8 + V]`` state ``[x, y, z, log w, log l, log h, sin yaw, cos yaw, v...]``.
    """
    yaw = box[..., YAW : YAW + 1]
    return torch.cat(
        [box[..., [X, Y, Z]], box[..., [W, L, H]].log(), torch.sin(yaw), torch.cos(yaw), box[..., YAW + 1 :]],
        dim=-1,
    )


def decode_box(box: Tensor) -> Tensor:
    """Turn regression states back into boxes (the inverse of :func:`encode_box`).

    Args:
        box: ``[..., 8 + V]`` state ``[x, y, z, log w, log l, log h, sin yaw, cos yaw, v...]``.
    Returns:
        ``[..., 7 + V]`` boxes ``[x, y, z, w, l, h, yaw, v...]``; yaw = atan2(sin, cos), so the pair need not be
        unit length.
    """
    yaw = torch.atan2(box[..., SIN_YAW], box[..., COS_YAW])
    return torch.cat([box[..., [X, Y, Z]], box[..., [W, L, H]].exp(), yaw[..., None], box[..., VX:]], dim=-1)
