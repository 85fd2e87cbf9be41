"""Sparse4D detection: box blocks, matching targets, losses, decoder and the head."""
from .decoder import SparseBox3DDecoder
from .detection3d_blocks import SparseBox3DEncoder, SparseBox3DKeyPointsGenerator, SparseBox3DRefinementModule
from .losses import SparseBox3DLoss
from .target import SparseBox3DTarget
from .detection3d_head import Sparse4DHead
