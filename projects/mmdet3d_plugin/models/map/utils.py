"""Polyline helpers shared by the map target (matching) and the map line loss."""
from typing import Sequence

from torch import Tensor

# Added to the ROI extent so that points exactly on the far border map strictly below 1.
NORM_EPS = 1e-5


def normalize_line(line: Tensor, num_sample: int, roi_size: Sequence[float]) -> Tensor:
    """Map flattened polylines from metres in the LiDAR BEV frame to about [0, 1] of the map ROI.

    Each point p becomes (p + roi_size / 2) / (roi_size + 1e-5), so x in [-15, 15] and y in [-30, 30]
    land in [0, 1) for roi_size (30, 60).

    Args:
        line: polylines, [..., num_sample * coords_dim], points flattened as (x0, y0, x1, y1, ...).
        num_sample: points per polyline.
        roi_size: (x extent, y extent) of the map ROI in metres.
    Returns:
        Normalised polylines, same shape and dtype as ``line``.
    """
    points = line.reshape(line.shape[:-1] + (num_sample, line.shape[-1] // num_sample))
    extent = points.new_tensor(roi_size[: points.shape[-1]])
    points = (points + extent / 2) / (extent + NORM_EPS)
    return points.flatten(-2, -1)
