"""core of the SparseDrive plugin; each submodule adds its import here once it imports cleanly."""
from . import box3d  # noqa: F401
