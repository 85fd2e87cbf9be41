"""models of the SparseDrive plugin; each submodule adds its import here once it imports cleanly."""
from .attention import MultiheadFlashAttention
from .grid_mask import GridMask
from .instance_bank import InstanceBank
from .sparsedrive_head import SparseDriveHead
from .sparsedrive import SparseDrive
from . import base_target, blocks, detection3d  # noqa: F401
from .motion import MotionPlanningHead
from . import map  # noqa: F401
