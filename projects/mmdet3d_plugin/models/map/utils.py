"""Polyline helpers shared by the map target (matching) and the map line loss."""
from typing import Dict, Sequence, Tuple

import torch
from torch import Tensor

# Added to the ROI extent so that points exactly on the far border map strictly below 1.
NORM_EPS = 1e-5


def roi_normalization(roi_size: Sequence[float], like: Tensor) -> Tuple[Tensor, Tensor]:
    """The (offset, scale) of :func:`normalize_line`, [coords_dim] each, on ``like``'s device and dtype.

    offset = roi_size / 2 and scale = roi_size + 1e-5, so a point p normalises to (p + offset) / scale.
    """
    extent = torch.tensor(roi_size, dtype=like.dtype, device=like.device)
    return extent / 2, extent + NORM_EPS


def _normalize_points(line: Tensor, num_sample: int, offset: Tensor, scale: Tensor) -> Tensor:
    """(p + offset) / scale for every point of [..., num_sample * coords_dim] polylines; same shape."""
    points = line.reshape(line.shape[:-1] + (num_sample, line.shape[-1] // num_sample))
    return ((points + offset) / scale).flatten(-2, -1)


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
    coords_dim = line.shape[-1] // num_sample
    return _normalize_points(line, num_sample, *roi_normalization(roi_size[:coords_dim], line))


class LineNormalizer:
    """:func:`normalize_line` with fixed ``num_sample`` / ``roi_size`` whose offset and scale tensors are built
    once per (device, dtype, coords_dim) and reused, instead of being copied to the device on every call.

    A plain cache, not module buffers, so owners that are ``nn.Module`` keep their state-dict keys.

    Args:
        num_sample: points per polyline.
        roi_size: (x extent, y extent) of the map ROI in metres.
    """

    def __init__(self, num_sample: int, roi_size: Sequence[float]) -> None:
        self.num_sample = num_sample
        self.roi_size = tuple(roi_size)
        self._constants: Dict[Tuple[torch.device, torch.dtype, int, bool], Tuple[Tensor, Tensor]] = {}

    def __call__(self, line: Tensor) -> Tensor:
        """[..., num_sample * coords_dim] metres -> the same shape normalised to the ROI."""
        coords_dim = line.shape[-1] // self.num_sample
        # inference-mode tensors cannot be saved for a later backward, so they are cached apart
        key = (line.device, line.dtype, coords_dim, torch.is_inference_mode_enabled())
        constants = self._constants.get(key)
        if constants is None:
            constants = roi_normalization(self.roi_size[:coords_dim], line)
            self._constants[key] = constants
        return _normalize_points(line, self.num_sample, *constants)
