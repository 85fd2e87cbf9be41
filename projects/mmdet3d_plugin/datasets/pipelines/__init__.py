"""Pipeline steps of the SparseDrive nuScenes dataset, registered in mmdet's PIPELINES registry.

``Collect`` is mmdet's stock transform (keys + ``meta_keys`` -> CPU-only ``img_metas``).
"""
from .augment import BBoxRotation, PhotoMetricDistortionMultiViewImage, ResizeCropFlipImage
from .loading import LoadMultiViewImageFromFiles, LoadPointsFromFile
from .transform import (
    CircleObjectRangeFilter,
    InstanceNameFilter,
    MultiScaleDepthMapGenerator,
    NormalizeMultiviewImage,
    NuScenesSparse4DAdaptor,
)
from .vectorize import VectorizeMap

__all__ = [
    "BBoxRotation",
    "CircleObjectRangeFilter",
    "InstanceNameFilter",
    "LoadMultiViewImageFromFiles",
    "LoadPointsFromFile",
    "MultiScaleDepthMapGenerator",
    "NormalizeMultiviewImage",
    "NuScenesSparse4DAdaptor",
    "PhotoMetricDistortionMultiViewImage",
    "ResizeCropFlipImage",
    "VectorizeMap",
]
