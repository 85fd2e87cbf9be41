"""Slow: synthetic nuScenes -> converter infos -> the stage-1/2 configs' train and test pipelines, full size."""
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = [os.path.join(ROOT, "projects", "configs", f"sparsedrive_small_stage{stage}.py") for stage in (1, 2)]


@pytest.fixture(scope="module")
def synthetic_infos(tmp_path_factory):
    synthetic = pytest.importorskip("tools.data_converter.synthetic_nuscenes")
    converter = pytest.importorskip("tools.data_converter.nuscenes_converter")
    root = str(tmp_path_factory.mktemp("synthetic_nuscenes"))
    synthetic.generate(root, scenes=2, samples=3, agents=4)
    train, val = converter.create_nuscenes_infos(root, os.path.join(root, "infos"), root, "nuscenes",
                                                 version="v1.0-mini")
    return dict(train=train, val=val)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=["stage1", "stage2"])
def test_train_and_test_pipelines_on_converted_infos(synthetic_infos, config):
    from mmcv import Config

    from projects.mmdet3d_plugin.datasets import build_dataset

    if not os.path.isfile(config):
        pytest.skip(f"{config} not written yet")
    cfg = Config.fromfile(config)
    train_cfg = cfg.data.train
    train_cfg.ann_file = synthetic_infos["train"]
    dataset = build_dataset(train_cfg)
    assert len(dataset) > 0 and hasattr(dataset, "flag"), "train dataset needs samples and sequence flags"
    aug = dataset.get_augmentation(rng=np.random.RandomState(0))
    np.random.seed(0)
    sample = dataset[dict(idx=0, aug_config=aug)]
    assert tuple(sample["img"].data.shape) == (6, 3, 256, 704), f"img {tuple(sample['img'].data.shape)}"
    assert [d.shape for d in sample["gt_depth"]] == [(6, 64, 176), (6, 32, 88), (6, 16, 44)], "depth strides"
    depth = sample["gt_depth"][0]
    hits = depth[depth > 0]
    assert hits.size > 0 and hits.min() >= 0.1 and hits.max() <= 60, "lidar points must give depth targets"
    boxes = sample["gt_bboxes_3d"].data.numpy()
    assert boxes.shape[1] == 9 and (np.hypot(boxes[:, 0], boxes[:, 1]) <= 55).all(), "range filter"
    assert (sample["gt_labels_3d"].data.numpy() >= 0).all(), "name filter"
    pts = sample["gt_map_pts"].data
    assert pts.shape[1:] == (38, 20, 2) and len(pts) == len(sample["gt_map_labels"].data), "map targets"
    assert sample["projection_mat"].shape == (6, 4, 4) and sample["focal"].shape == (6,), "camera inputs"
    metas = sample["img_metas"].data
    assert len(metas["instance_id"]) == len(boxes), "instance ids must follow the box filters"

    test_cfg = cfg.data.test
    test_cfg.ann_file = synthetic_infos["val"]
    test_sample = build_dataset(test_cfg)[0]
    assert tuple(test_sample["img"].data.shape) == (6, 3, 256, 704), "test image size"
    assert set(test_sample) == {"img", "timestamp", "projection_mat", "image_wh", "ego_status", "gt_ego_fut_cmd",
                                "img_metas"}, f"test keys {set(test_sample)}"
