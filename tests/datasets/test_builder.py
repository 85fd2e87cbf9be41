"""build_dataloader without torch.distributed: the training batch format and the sequential eval loader."""
import numpy as np
import torch
from mmcv.parallel import DataContainer

from projects.mmdet3d_plugin.datasets import NuScenes3DDataset, build_dataloader
from projects.mmdet3d_plugin.datasets.samplers import GroupInBatchSampler
from tests.datasets.info_factory import AUG, CAMERA, CLASS_NAMES, IMG_NORM, TRAIN_PIPELINE

TEST_PIPELINE = [
    dict(type="LoadMultiViewImageFromFiles", to_float32=True),
    dict(type="ResizeCropFlipImage"),
    dict(type="NormalizeMultiviewImage", **IMG_NORM),
    dict(type="NuScenesSparse4DAdaptor"),
    dict(type="Collect", keys=["img", "timestamp", "projection_mat", "image_wh", "ego_status", "gt_ego_fut_cmd"],
         meta_keys=["T_global", "T_global_inv", "timestamp"]),
]


def test_iter_based_loader_yields_collated_training_batches(tiny_nuscenes):
    dataset = NuScenes3DDataset(ann_file=tiny_nuscenes["ann_file"], pipeline=TRAIN_PIPELINE, classes=CLASS_NAMES,
                                modality=CAMERA, data_aug_conf=AUG, with_seq_flag=True, sequences_split_num=2)
    loader = build_dataloader(dataset, samples_per_gpu=2, workers_per_gpu=0, dist=False, seed=0,
                              runner_type="IterBasedRunner")
    assert isinstance(loader.batch_sampler, GroupInBatchSampler), "training must use GroupInBatchSampler"
    batch = next(iter(loader))
    img = batch["img"]
    assert isinstance(img, DataContainer) and tuple(img.data[0].shape) == (2, 6, 3, 16, 24), "img [B, N, 3, H, W]"
    assert tuple(batch["projection_mat"].shape) == (2, 6, 4, 4), "projection_mat [B, N, 4, 4]"
    assert tuple(batch["image_wh"].shape) == (2, 6, 2) and tuple(batch["focal"].shape) == (2, 6), "image_wh/focal"
    assert batch["timestamp"].dtype == torch.float64 and batch["timestamp"].shape == (2,), "timestamp [B] float64"
    assert [tuple(d.shape) for d in batch["gt_depth"]] == [(2, 6, 4, 6), (2, 6, 2, 3)], "gt_depth per stride"
    assert len(batch["gt_bboxes_3d"].data[0]) == 2, "gt_bboxes_3d: one tensor per sample"
    assert tuple(batch["gt_ego_fut_trajs"].data[0].shape) == (2, 6, 2), "ego trajs stacked [B, 6, 2]"
    assert tuple(batch["ego_status"].data[0].shape) == (2, 10), "ego_status [B, 10]"
    metas = batch["img_metas"].data[0]
    assert len(metas) == 2 and metas[0]["T_global"].shape == (4, 4), "img_metas: one dict per sample"


def test_iter_based_loader_resumes_at_start_iter(tiny_nuscenes):
    dataset = NuScenes3DDataset(ann_file=tiny_nuscenes["ann_file"], pipeline=[], classes=CLASS_NAMES,
                                modality=CAMERA, data_aug_conf=AUG, with_seq_flag=True, sequences_split_num=2)
    full = build_dataloader(dataset, 2, 0, dist=False, seed=3, runner_type="IterBasedRunner").batch_sampler
    resumed = build_dataloader(dataset, 2, 0, dist=False, seed=3, runner_type="IterBasedRunner",
                               start_iter=5).batch_sampler
    expected = [b for _, b in zip(range(8), iter(full))][5:]
    assert [b for _, b in zip(range(3), iter(resumed))] == expected, "start_iter must skip exactly 5 batches"


def test_non_distributed_eval_loader_is_sequential(tiny_nuscenes):
    dataset = NuScenes3DDataset(ann_file=tiny_nuscenes["ann_file"], pipeline=TEST_PIPELINE, classes=CLASS_NAMES,
                                modality=CAMERA, data_aug_conf=AUG, test_mode=True)
    loader = build_dataloader(dataset, samples_per_gpu=1, workers_per_gpu=0, dist=False, shuffle=False)
    times = [float(batch["timestamp"][0]) for batch in loader]
    np.testing.assert_allclose(times, [0.0, 0.5, 1.0, 20.0, 20.5, 21.0], err_msg="eval order must be dataset order")
