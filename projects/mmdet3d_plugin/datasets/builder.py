"""Dataset and data-loader construction (sampler choice follows upstream SparseDrive)."""
import logging
import random
from functools import partial
from typing import Dict, Optional, Union

import numpy as np
import torch
from mmcv.parallel import collate
from mmcv.runner import get_dist_info
from mmcv.utils import build_from_cfg
from mmdet.datasets import DATASETS
from mmdet.datasets.samplers import GroupSampler
from torch.utils.data import DataLoader, RandomSampler

from .samplers import GroupInBatchSampler, build_sampler

logger = logging.getLogger(__name__)


def build_dataloader(
    dataset,
    samples_per_gpu: int,
    workers_per_gpu: int,
    num_gpus: int = 1,
    dist: bool = True,
    shuffle: bool = True,
    seed: Optional[int] = None,
    shuffler_sampler: Optional[Dict] = None,
    nonshuffler_sampler: Optional[Dict] = None,
    runner_type: Union[str, Dict] = "EpochBasedRunner",
    start_iter: int = 0,
    **kwargs,
) -> DataLoader:
    """Build the per-process DataLoader.

    - ``runner_type`` (a name, or the config's ``runner`` dict) is ``'IterBasedRunner'`` (training):
      :class:`GroupInBatchSampler` yields whole batches of ``samples_per_gpu``; ``start_iter``
      resumes it at that iteration. Works without torch.distributed (world size 1).
    - ``dist`` and ``shuffle``: ``shuffler_sampler`` (default ``DistributedGroupSampler``).
    - ``dist`` and not ``shuffle`` (val/test): ``nonshuffler_sampler`` (default the
      sequence-preserving ``DistributedSampler``).
    - otherwise: mmdet ``GroupSampler`` (or a seeded random sampler when the dataset has no
      ``flag``) if ``shuffle``, else sequential; batch ``num_gpus * samples_per_gpu``.

    Batches are collated with mmcv ``collate(samples_per_gpu)``. With a ``seed``, worker w of rank r
    seeds numpy and ``random`` with ``num_workers * r + w + seed``. Extra ``kwargs`` go to DataLoader.
    """
    rank, world_size = get_dist_info()
    if isinstance(runner_type, dict):
        runner_type = runner_type["type"]
    sampler, batch_sampler = None, None
    if runner_type == "IterBasedRunner":
        batch_sampler = GroupInBatchSampler(
            dataset, samples_per_gpu, world_size, rank, seed=seed, start_iter=start_iter
        )
        batch_size, num_workers = 1, workers_per_gpu
    elif dist:
        if shuffle:
            sampler = build_sampler(
                shuffler_sampler or dict(type="DistributedGroupSampler"),
                dict(dataset=dataset, samples_per_gpu=samples_per_gpu, num_replicas=world_size, rank=rank, seed=seed),
            )
        else:
            sampler = build_sampler(
                nonshuffler_sampler or dict(type="DistributedSampler"),
                dict(dataset=dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed),
            )
        batch_size, num_workers = samples_per_gpu, workers_per_gpu
    else:
        if shuffle and hasattr(dataset, "flag"):
            sampler = GroupSampler(dataset, samples_per_gpu)
        elif shuffle:
            generator = torch.Generator()
            generator.manual_seed(0 if seed is None else seed)
            sampler = RandomSampler(dataset, generator=generator)
        batch_size, num_workers = num_gpus * samples_per_gpu, num_gpus * workers_per_gpu
    chosen = batch_sampler if batch_sampler is not None else sampler
    logger.info(
        "data loader: %s sampler, %d workers", "sequential" if chosen is None else type(chosen).__name__, num_workers
    )
    init_fn = partial(worker_init_fn, num_workers=num_workers, rank=rank, seed=seed) if seed is not None else None
    if batch_sampler is not None:
        # Starting the loader draws a base seed; from its own generator, not the global torch RNG, so a resumed
        # run (which restores the global RNG before the runner starts the loader) keeps the dropout draws.
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed or 0))
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=partial(collate, samples_per_gpu=samples_per_gpu),
            pin_memory=False,
            worker_init_fn=init_fn,
            **kwargs,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=partial(collate, samples_per_gpu=samples_per_gpu),
        pin_memory=False,
        worker_init_fn=init_fn,
        **kwargs,
    )


def worker_init_fn(worker_id: int, num_workers: int, rank: int, seed: int) -> None:
    """Seed numpy and ``random`` of a loader worker with ``num_workers * rank + worker_id + seed``."""
    worker_seed = num_workers * rank + worker_id + seed
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_dataset(cfg, default_args: Optional[Dict] = None):
    """Build a dataset from a config; lists and ``ConcatDataset`` / ``RepeatDataset`` /
    ``ClassBalancedDataset`` wrappers are unfolded, anything else goes through mmdet's DATASETS."""
    from mmdet.datasets.dataset_wrappers import ClassBalancedDataset, ConcatDataset, RepeatDataset

    if isinstance(cfg, (list, tuple)):
        return ConcatDataset([build_dataset(c, default_args) for c in cfg])
    kind = cfg["type"]
    if kind == "ConcatDataset":
        return ConcatDataset([build_dataset(c, default_args) for c in cfg["datasets"]], cfg.get("separate_eval", True))
    if kind == "RepeatDataset":
        return RepeatDataset(build_dataset(cfg["dataset"], default_args), cfg["times"])
    if kind == "ClassBalancedDataset":
        return ClassBalancedDataset(build_dataset(cfg["dataset"], default_args), cfg["oversample_thr"])
    return build_from_cfg(cfg, DATASETS, default_args)


# upstream's name for the same builder
custom_build_dataset = build_dataset
