"""Small deformable-aggregation inputs shared by the op tests (tiny, seeded, with border cases)."""
from typing import Dict, List, Sequence, Tuple

import torch

from projects.mmdet3d_plugin.ops import feature_maps_format

LEVEL_SHAPES = ((4, 6), (2, 3))

# (b, a, p, n) -> (u, v) at the image border and at pixel centres; set where the case is large enough
BORDER_CASES = (
    ((0, 0, 0, 0), (0.0, 0.5)),  # on the left border: skipped
    ((0, 0, 1, 0), (1.0, 0.5)),  # on the right border: skipped
    ((0, 0, 2, 0), (0.5, 0.0)),  # on the top border: skipped
    ((0, 1, 0, 0), (0.5, 1.0)),  # on the bottom border: skipped
    ((0, 1, 1, 0), (1e-3, 0.999)),  # just inside, neighbours partly outside
    ((0, 0, 1, 1), (2.5 / 6.0, 1.5 / 4.0)),  # exactly on a level-0 pixel centre
    ((1, 0, 0, 0), (0.5, 0.5)),  # centre of the image
)


def make_case(
    seed: int = 0,
    batch: int = 2,
    num_cams: int = 2,
    channels: int = 8,
    groups: int = 2,
    num_anchor: int = 3,
    num_pts: int = 4,
    level_shapes: Sequence[Tuple[int, int]] = LEVEL_SHAPES,
    dtype: torch.dtype = torch.float32,
    with_borders: bool = True,
) -> Dict[str, object]:
    """Maps, flattened triple, locations in [-0.2, 1.2] (plus exact 0 / 1 / pixel-edge values) and weights."""
    gen = torch.Generator().manual_seed(seed)
    maps: List[torch.Tensor] = [
        torch.randn(batch, num_cams, channels, h, w, generator=gen, dtype=dtype) for h, w in level_shapes
    ]
    location = torch.rand(batch, num_anchor, num_pts, num_cams, 2, generator=gen, dtype=dtype) * 1.4 - 0.2
    if with_borders:
        for index, value in BORDER_CASES:
            if all(i < n for i, n in zip(index, location.shape)):
                location[index] = torch.tensor(value, dtype=dtype)
    weights = torch.rand(batch, num_anchor, num_pts, num_cams, len(level_shapes), groups, generator=gen, dtype=dtype)
    return dict(maps=maps, triple=feature_maps_format(maps), location=location, weights=weights)


def leaf_inputs(case: Dict[str, object]) -> List[torch.Tensor]:
    """Fresh leaf copies (requires_grad) of features, locations and weights."""
    feats = case["triple"][0]
    return [t.detach().clone().requires_grad_() for t in (feats, case["location"], case["weights"])]
