"""Sparse online-mapping head parts: polyline anchors, keypoints, refinement, targets, losses, decoder."""
from .decoder import SparsePoint3DDecoder
from .loss import LinesL1Loss, SparseLineLoss
from .map_blocks import (
    SparsePoint3DEncoder,
    SparsePoint3DKeyPointsGenerator,
    SparsePoint3DRefinementModule,
)
from .match_cost import LinesL1Cost, MapQueriesCost
from .target import HungarianLinesAssigner, SparsePoint3DTarget

__all__ = [
    "HungarianLinesAssigner",
    "LinesL1Cost",
    "LinesL1Loss",
    "MapQueriesCost",
    "SparseLineLoss",
    "SparsePoint3DDecoder",
    "SparsePoint3DEncoder",
    "SparsePoint3DKeyPointsGenerator",
    "SparsePoint3DRefinementModule",
    "SparsePoint3DTarget",
]
