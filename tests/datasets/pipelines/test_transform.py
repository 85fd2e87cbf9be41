"""Depth targets, GT filters, normalisation and the adaptor on hand-built inputs."""
import numpy as np
import pytest
import torch

from projects.mmdet3d_plugin.datasets.pipelines.transform import (
    CircleObjectRangeFilter,
    InstanceNameFilter,
    MultiScaleDepthMapGenerator,
    NormalizeMultiviewImage,
    NuScenesSparse4DAdaptor,
)

# camera = lidar frame here: u = 10 x / z + 16, v = 10 y / z + 8 on a 32 x 16 image
PROJ = np.array([[10.0, 0, 16, 0], [0, 10.0, 8, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])


def test_depth_map_hand_built_case():
    points = np.array(
        [
            [0.0, 0.0, 5.0, 0, 0],  # (u, v) = (16, 8), depth 5
            [0.0, 0.0, 2.0, 0, 0],  # same pixel, nearer: wins
            [1.0, 0.6, 10.0, 0, 0],  # (17, 8.6 -> 9), depth 10
            [0.0, 0.0, -5.0, 0, 0],  # behind the camera
            [20.0, 0.0, 5.0, 0, 0],  # u = 56: outside
            [50.0, 0.0, 100.0, 0, 0],  # (21, 8), depth clipped to 60
        ],
        dtype=np.float32,
    )
    out = MultiScaleDepthMapGenerator(downsample=[1, 4], max_depth=60)(
        dict(points=points, lidar2img=[PROJ, PROJ], img_shape=[(16, 32), (16, 32)])
    )
    full, coarse = out["gt_depth"]
    assert full.shape == (2, 16, 32) and coarse.shape == (2, 4, 8), f"shapes {full.shape}, {coarse.shape}"
    assert full.dtype == np.float32, "depth maps must be float32"
    expected = np.full((16, 32), -1.0, dtype=np.float32)
    expected[8, 16], expected[9, 17], expected[8, 21] = 2.0, 10.0, 60.0
    np.testing.assert_array_equal(full[0], expected, err_msg="stride-1 depth map differs from the hand-built one")
    expected_coarse = np.full((4, 8), -1.0, dtype=np.float32)
    expected_coarse[2, 4] = 2.0  # (8,16), (9,17) fall into one cell: nearest wins
    expected_coarse[2, 5] = 60.0
    np.testing.assert_array_equal(coarse[1], expected_coarse, err_msg="stride-4 depth map is wrong")


def test_depth_map_ignores_cells_beyond_an_inexact_stride():
    points = np.array([[1.5, 0.0, 1.0]], dtype=np.float32)  # u = 31 on a 32-wide image, stride 3 -> 10 cells
    out = MultiScaleDepthMapGenerator(downsample=3)(dict(points=points, lidar2img=[PROJ], img_shape=[(16, 32)]))
    assert out["gt_depth"][0].shape == (1, 5, 10) and (out["gt_depth"][0] == -1).all(), "u // 3 = 10 must be dropped"


def box_results():
    boxes = np.zeros((5, 9))
    boxes[:, 0] = [10.0, 60.0, 20.0, 30.0, 40.0]
    labels = np.array([0, 0, -1, 5, 5])
    return dict(
        gt_bboxes_3d=boxes,
        gt_labels_3d=labels,
        gt_names=np.array(["car", "car", "animal", "barrier", "barrier"]),
        instance_inds=np.arange(5),
        gt_agent_fut_trajs=np.arange(5)[:, None, None] * np.ones((5, 12, 2)),
        gt_agent_fut_masks=np.ones((5, 12)),
    )


def test_circle_range_filter_uses_per_class_radius():
    out = CircleObjectRangeFilter()(box_results())  # defaults: car 52.5 m, barrier 31.5 m
    np.testing.assert_array_equal(out["instance_inds"], [0, 3], err_msg="wrong boxes kept")
    np.testing.assert_array_equal(out["gt_bboxes_3d"][:, 0], [10.0, 30.0], err_msg="boxes not filtered")
    np.testing.assert_array_equal(out["gt_labels_3d"], [0, 5], err_msg="labels not filtered")
    np.testing.assert_array_equal(out["gt_agent_fut_trajs"][:, 0, 0], [0, 3], err_msg="trajs not filtered")
    assert out["gt_agent_fut_masks"].shape == (2, 12), "masks not filtered"


def test_circle_range_filter_radius_is_inclusive():
    out = CircleObjectRangeFilter(class_dist_thred=[10.0] * 10)(box_results())
    np.testing.assert_array_equal(out["instance_inds"], [0], err_msg="a box at exactly the radius is kept")


def test_instance_name_filter_drops_unknown_labels():
    out = InstanceNameFilter(classes=["car", "truck", "construction_vehicle", "bus", "trailer", "barrier"])(
        box_results()
    )
    np.testing.assert_array_equal(out["instance_inds"], [0, 1, 3, 4], err_msg="label -1 must go, others stay")
    np.testing.assert_array_equal(out["gt_names"], ["car", "car", "barrier", "barrier"], err_msg="names")


def test_normalize_converts_bgr_to_rgb_then_standardises():
    img = np.zeros((2, 3, 3), dtype=np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 10.0, 20.0, 30.0  # B, G, R
    mean, std = [1.0, 2.0, 3.0], [2.0, 4.0, 8.0]
    out = NormalizeMultiviewImage(mean=mean, std=std, to_rgb=True)(dict(img=[img]))
    np.testing.assert_allclose(out["img"][0][0, 0], [(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8], rtol=1e-6,
                               err_msg="normalisation must act on RGB order")
    assert out["img_norm_cfg"]["to_rgb"] is True, "img_norm_cfg not recorded"


def test_adaptor_outputs():
    num_views = 6
    boxes = np.zeros((3, 9))
    boxes[:, 6] = [3.5, -np.pi, np.pi]
    intrinsic = np.diag([500.0, 400.0, 1.0])
    results = dict(
        img=[np.ones((16, 24, 3), dtype=np.float32) * i for i in range(num_views)],
        img_shape=[(16, 24)] * num_views,
        lidar2img=[np.eye(4) * (i + 1) for i in range(num_views)],
        lidar2global=np.diag([2.0, 2.0, 2.0, 1.0]),
        cam_intrinsic=[intrinsic] * num_views,
        instance_inds=np.array([4, 5, 6]),
        gt_bboxes_3d=boxes,
        gt_labels_3d=np.array([0, 1, 2]),
        gt_map_labels=np.array([1, 0]),
        gt_map_pts=np.zeros((2, 38, 20, 2), dtype=np.float32),
        gt_agent_fut_trajs=np.zeros((3, 12, 2), dtype=np.float32),
        gt_agent_fut_masks=np.ones((3, 12), dtype=np.float32),
        gt_ego_fut_trajs=np.zeros((6, 2), dtype=np.float32),
        gt_ego_fut_masks=np.ones(6, dtype=np.float32),
        gt_ego_fut_cmd=np.array([0, 0, 1.0], dtype=np.float32),
        ego_status=np.zeros(10, dtype=np.float32),
    )
    out = NuScenesSparse4DAdaptor()(results)
    assert out["projection_mat"].shape == (6, 4, 4) and out["projection_mat"].dtype == np.float32, "projection_mat"
    np.testing.assert_array_equal(out["projection_mat"][2], np.eye(4) * 3, err_msg="views out of order")
    np.testing.assert_array_equal(out["image_wh"], np.tile([[24.0, 16.0]], (6, 1)), err_msg="image_wh is (w, h)")
    np.testing.assert_allclose(out["T_global_inv"] @ out["T_global"], np.eye(4), err_msg="T_global_inv")
    np.testing.assert_array_equal(out["focal"], np.full(6, 500.0, dtype=np.float32), err_msg="focal = fx")
    np.testing.assert_array_equal(out["instance_id"], [4, 5, 6], err_msg="instance_id")
    img = out["img"]
    assert img.stack and tuple(img.data.shape) == (6, 3, 16, 24), f"img DC {img.data.shape}, stack={img.stack}"
    assert torch.equal(img.data[4, :, 0, 0], torch.full((3,), 4.0)), "channels-first transpose wrong"
    yaw = out["gt_bboxes_3d"].data[:, 6]
    assert out["gt_bboxes_3d"].data.dtype == torch.float32, "boxes must be float32"
    torch.testing.assert_close(yaw, torch.tensor([3.5 - 2 * np.pi, -np.pi, -np.pi], dtype=torch.float32),
                               msg="yaw must be wrapped into [-pi, pi)")
    assert out["gt_labels_3d"].data.dtype == torch.int64, "labels must be int64"
    for key in ("gt_map_labels", "gt_map_pts", "gt_agent_fut_trajs", "gt_agent_fut_masks"):
        assert not out[key].stack and not out[key].cpu_only, f"{key} must be an unstacked GPU DC"
    for key in ("gt_ego_fut_trajs", "gt_ego_fut_masks", "gt_ego_fut_cmd", "ego_status"):
        assert out[key].stack and out[key].pad_dims is None, f"{key} must be a stacked DC without padding"


@pytest.mark.parametrize("bad", [np.array([7]), np.array([-2])])
def test_name_filter_removes_out_of_range_labels(bad):
    results = dict(gt_bboxes_3d=np.zeros((1, 9)), gt_labels_3d=bad)
    assert len(InstanceNameFilter(classes=["car"])(results)["gt_labels_3d"]) == 0, f"label {bad} kept"
