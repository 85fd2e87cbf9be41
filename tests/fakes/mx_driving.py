"""Fake ``mx_driving`` (DrivingSDK) for CPU tests: ``deformable_aggregation`` and the patcher API.

``deformable_aggregation`` checks every argument against the documented contract and limits (npu spec
5.1), then computes with ``COMPUTE`` (our reference implementation by default; autograd gives the
backward). Calls are recorded in ``CALLS``; the patcher records the patches it applies in ``APPLIED`` and
changes nothing.
"""
import importlib
import types
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from projects.mmdet3d_plugin.ops.deformable_aggregation.reference import deformable_aggregation as _reference

CALLS: List[Tuple[str, dict]] = []
APPLIED: List[Tuple[str, str]] = []

MAX_ELEMENTS = 150_000_000

# What computes the result once the arguments pass the checks. Whole-model tests may swap in the fast CPU
# backend (same numbers and gradients, tested against the reference in tests/ops) to stay quick.
COMPUTE: Callable[..., Tensor] = _reference


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"fake mx_driving.deformable_aggregation: {message}")


def deformable_aggregation(
    feature_maps: Tensor, spatial_shape: Tensor, scale_start_index: Tensor, sample_locations: Tensor, weight: Tensor
) -> Tensor:
    """Checked stand-in of the kernel.

    feature_maps [bs, num_feat, c]; spatial_shape [cam, scale, 2]; scale_start_index [cam, scale];
    sample_locations [bs, anchor, pts, cam, 2]; weight [bs, anchor, pts, cam, scale, group] -> [bs, anchor, c].
    """
    CALLS.append(("deformable_aggregation", dict(
        feature_maps=feature_maps, spatial_shape=spatial_shape, scale_start_index=scale_start_index,
        sample_locations=sample_locations, weight=weight,
    )))
    _require(feature_maps.numel() > 0 and weight.numel() > 0, "empty feature_maps or weight")
    for name, tensor in (("feature_maps", feature_maps), ("sample_locations", sample_locations), ("weight", weight)):
        _require(tensor.dtype == torch.float32, f"{name} must be float32, got {tensor.dtype}")
        _require(tensor.numel() <= MAX_ELEMENTS, f"{name} has more than {MAX_ELEMENTS} elements")
    for name, tensor in (("spatial_shape", spatial_shape), ("scale_start_index", scale_start_index)):
        _require(tensor.dtype in (torch.int32, torch.int64), f"{name} must be int32 (or int64), got {tensor.dtype}")
    _require(feature_maps.dim() == 3, f"feature_maps must be [bs, num_feat, c], got {tuple(feature_maps.shape)}")
    _require(
        sample_locations.dim() == 5 and sample_locations.shape[-1] == 2, "sample_locations must be [bs, anchor, pts, cam, 2]"
    )
    bs, num_feat, channels = feature_maps.shape
    _, anchor, pts, cam, _ = sample_locations.shape
    _require(
        weight.dim() == 6 and tuple(weight.shape[:4]) == (bs, anchor, pts, cam),
        "weight must be [bs, anchor, pts, cam, scale, group]",
    )
    scale, group = weight.shape[4:]
    _require(tuple(spatial_shape.shape) == (cam, scale, 2), f"spatial_shape must be [{cam}, {scale}, 2]")
    _require(tuple(scale_start_index.shape) == (cam, scale), f"scale_start_index must be [{cam}, {scale}]")
    _require(sample_locations.shape[0] == bs, "sample_locations batch differs from feature_maps")
    _require(bs <= 128 and channels <= 256 and cam <= 6 and scale <= 4, "bs <= 128, c <= 256, cam <= 6, scale <= 4")
    _require(anchor <= 2048 and pts <= 2048, "anchor <= 2048 and pts <= 2048")
    _require(group == 8 and channels % group == 0 and (channels // group) % 8 == 0, "group == 8, c / group % 8 == 0")
    sizes = (spatial_shape[..., 0] * spatial_shape[..., 1]).flatten().long()
    _require(int(sizes.sum()) == num_feat, f"num_feat {num_feat} != sum of H*W {int(sizes.sum())}")
    starts = torch.cumsum(sizes, 0) - sizes
    _require(torch.equal(scale_start_index.flatten().long(), starts), "scale_start_index is not the packed offsets")
    _require(bool(torch.isfinite(sample_locations).all()), "sample_locations must be finite")
    return COMPUTE(feature_maps, spatial_shape, scale_start_index, sample_locations, weight)


npu_deformable_aggregation = deformable_aggregation


class Patch:
    def __init__(self, func: Callable, options: Optional[Dict] = None, priority: int = 0):
        self.func = func
        self.name = func.__name__
        self.options = {} if options is None else options
        self.priority = priority


class Patcher:
    def __init__(self, module_patches: Dict[str, List[Patch]], allow_internal_format: bool):
        self.module_patches = module_patches
        self.allow_internal_format = allow_internal_format

    def apply(self) -> None:
        for module_name, patches in self.module_patches.items():
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                warnings.warn(f"fake mx_driving.patcher: module {module_name} not found")
                continue
            for patch in patches:
                patch.func(module, patch.options)

    def __enter__(self):
        self.apply()
        return self

    def __exit__(self, *exc_info) -> None:
        return None


class PatcherBuilder:
    def __init__(self):
        self.module_patches: Dict[str, List[Patch]] = {}
        self.brake_step: Optional[int] = None

    def add_module_patch(self, module_name: str, *patches: Patch) -> "PatcherBuilder":
        if not all(isinstance(patch, Patch) for patch in patches):
            raise TypeError("fake mx_driving.patcher: add_module_patch takes Patch objects")
        self.module_patches.setdefault(module_name, []).extend(patches)
        return self

    def brake_at(self, brake_step: int) -> "PatcherBuilder":
        self.brake_step = brake_step
        return self

    def build(self, allow_internal_format: bool = False) -> Patcher:
        return Patcher(self.module_patches, allow_internal_format)


def _builtin(name: str) -> Callable:
    def patch(module: types.ModuleType, options: Dict) -> None:
        APPLIED.append((module.__name__, name))

    patch.__name__ = name
    return patch


BUILTIN_PATCH_NAMES = ("index", "batch_matmul", "numpy_type", "ddp", "stream", "resnet_add_relu", "resnet_maxpool")


def submodules() -> dict:
    """``sys.modules`` entries for the fake's submodules."""
    patcher = types.ModuleType("mx_driving.patcher")
    patcher.Patch, patcher.Patcher, patcher.PatcherBuilder = Patch, Patcher, PatcherBuilder
    for name in BUILTIN_PATCH_NAMES:
        setattr(patcher, name, _builtin(name))
    return {"mx_driving.patcher": patcher}
