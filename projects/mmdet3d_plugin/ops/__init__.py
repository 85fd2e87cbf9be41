"""Hot ops of the SparseDrive plugin, each one public function with several backends.

The only package that imports torch_npu / mx_driving / triton (lazily, inside the backend modules).
A backend is chosen per op from the input's device type (cpu / cuda / npu) and can be forced with
``set_backend(op, name)`` or ``SPARSEDRIVE_OPS_BACKEND_<OP>=name`` (see ``dispatch``).
"""
from .deformable_aggregation import deformable_aggregation, grid_sample_aggregation
from .dispatch import available_backends, backend_name, set_backend
from .feature_maps import feature_maps_format
from .flash_attention import flash_attention
from .npu_patches import apply_npu_patches
from .optim import build_adamw, clip_grad_norm

# upstream's public name for the same function (upstream's models/blocks.py imports it as DAF); kept for code
# written against upstream's ops package
deformable_aggregation_function = deformable_aggregation

__all__ = [
    "apply_npu_patches",
    "available_backends",
    "backend_name",
    "build_adamw",
    "clip_grad_norm",
    "deformable_aggregation",
    "deformable_aggregation_function",
    "feature_maps_format",
    "flash_attention",
    "grid_sample_aggregation",
    "set_backend",
]
