"""Datasets of the SparseDrive plugin: the nuScenes dataset, its pipeline steps, samplers and loader."""
from .builder import build_dataloader, build_dataset, custom_build_dataset
from .nuscenes_3d_dataset import NuScenes3DDataset
from .pipelines import *  # noqa: F401,F403  (registers every pipeline step)
from .samplers import *  # noqa: F401,F403  (registers the samplers)

__all__ = ["NuScenes3DDataset", "build_dataloader", "build_dataset", "custom_build_dataset"]
