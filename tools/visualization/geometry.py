"""Box corners and camera projection with near-plane clipping (numpy, LiDAR frame, metres)."""
from typing import List, Optional, Tuple

import numpy as np

# corner order of box_corners: bottom face (front-left, front-right, back-right, back-left), then the top face
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
NEAR = 0.1  # metres in front of the camera below which a point is not drawn


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """Eight corners of each box.

    Args:
        boxes: ``[A, >=7]`` ``[x, y, z, w, l, h, yaw, ...]`` with w along the heading, l across it (the
            repository's box layout, ``core/box3d.py``), z at the box centre, yaw from +x.
    Returns:
        ``[A, 8, 3]``: bottom face front-left, front-right, back-right, back-left, then the top face.
    """
    boxes = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
    half = boxes[:, 3:6] / 2
    unit = np.array([[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1],
                     [1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]], dtype=np.float64)
    local = unit[None] * half[:, None]
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # [A, 2, 2]
    xy = np.einsum("aij,apj->api", rot, local[..., :2])
    return np.concatenate([xy, local[..., 2:]], -1) + boxes[:, None, :3]


def heading_segment(box: np.ndarray) -> np.ndarray:
    """``[2, 2]`` from the box centre to the middle of its front edge (BEV)."""
    front = box[:2] + box[3] / 2 * np.array([np.cos(box[6]), np.sin(box[6])])
    return np.stack([box[:2], front])


def project_segment(p0: np.ndarray, p1: np.ndarray, lidar2img: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Image pixels of the part of segment p0-p1 (LiDAR frame, [3]) in front of the camera, else None.

    ``lidar2img`` is the [4, 4] intrinsics @ extrinsics matrix (its third row gives the camera depth).
    """
    d0 = lidar2img[2] @ np.append(p0, 1.0)
    d1 = lidar2img[2] @ np.append(p1, 1.0)
    if d0 < NEAR and d1 < NEAR:
        return None
    if d0 < NEAR:
        p0 = p0 + (p1 - p0) * (NEAR - d0) / (d1 - d0)
    elif d1 < NEAR:
        p1 = p1 + (p0 - p1) * (NEAR - d1) / (d0 - d1)
    pixels = []
    for point in (p0, p1):
        uvw = lidar2img[:3] @ np.append(point, 1.0)
        pixels.append(uvw[:2] / uvw[2])
    return pixels[0], pixels[1]


def project_polyline(points: np.ndarray, lidar2img: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Visible pixel segments of a 3D polyline ``[P, 3]`` (consecutive vertices joined)."""
    segments = []
    for p0, p1 in zip(points[:-1], points[1:]):
        seg = project_segment(p0, p1, lidar2img)
        if seg is not None:
            segments.append(seg)
    return segments


def in_front(points: np.ndarray, lidar2img: np.ndarray) -> bool:
    """Whether any of ``points`` [P, 3] lies in front of the camera."""
    homo = np.concatenate([points, np.ones((len(points), 1))], -1)
    return bool((homo @ lidar2img[2] > NEAR).any())
