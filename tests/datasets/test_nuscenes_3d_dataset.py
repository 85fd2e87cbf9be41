"""NuScenes3DDataset on a hand-built two-scene info list (tiny PNGs in tmp_path)."""
import numpy as np
import pytest
import torch

from projects.mmdet3d_plugin.datasets import NuScenes3DDataset
from tests.datasets.info_factory import (
    AUG,
    CAM_OFFSET,
    CAMERA,
    CLASS_NAMES,
    INTRINSIC,
    TRAIN_PIPELINE,
    make_info,
    sensor2lidar_rotation,
    write_infos,
)

def build(tiny, **kwargs):
    args = dict(ann_file=tiny["ann_file"], pipeline=TRAIN_PIPELINE, classes=CLASS_NAMES, modality=CAMERA,
                data_aug_conf=AUG)
    args.update(kwargs)
    return NuScenes3DDataset(**args)


def test_infos_are_sorted_by_time_and_version_comes_from_the_pkl(tiny_nuscenes):
    dataset = build(tiny_nuscenes)
    assert [i["token"] for i in dataset.data_infos] == ["s0f0", "s0f1", "s0f2", "s1f0", "s1f1", "s1f2"], "order"
    assert dataset.version == "v1.0-mini", "version must come from the pkl metadata"
    assert len(build(tiny_nuscenes, load_interval=2)) == 3, "load_interval keeps every 2nd info"


def test_sequence_flags_split_scenes_into_chunks(tiny_nuscenes):
    whole = build(tiny_nuscenes, with_seq_flag=True, sequences_split_num=1)
    np.testing.assert_array_equal(whole.flag, [0, 0, 0, 1, 1, 1], err_msg="a scene is one sequence")
    halves = build(tiny_nuscenes, with_seq_flag=True, sequences_split_num=2)
    np.testing.assert_array_equal(halves.flag, [0, 0, 1, 2, 2, 3], err_msg="ceil(3/2)=2-frame chunks expected")
    single = build(tiny_nuscenes, with_seq_flag=True, sequences_split_num="all")
    np.testing.assert_array_equal(single.flag, np.arange(6), err_msg="'all': one frame per group")
    by_scene = build(tiny_nuscenes, with_seq_flag=True, seq_split_by_scene=True)
    np.testing.assert_array_equal(by_scene.flag, whole.flag, err_msg="scene-token split must agree here")
    with pytest.raises(ValueError, match="sequences_split_num=4"):
        build(tiny_nuscenes, with_seq_flag=True, sequences_split_num=4)


def test_test_mode_augmentation_matches_the_upstream_numbers(tiny_nuscenes):
    conf = dict(AUG, H=900, W=1600, final_dim=(256, 704), resize_lim=(0.40, 0.47), rot_lim=(-5.4, 5.4))
    aug = build(tiny_nuscenes, test_mode=True, data_aug_conf=conf).get_augmentation()
    assert aug["resize"] == pytest.approx(0.44) and aug["resize_dims"] == (704, 396), f"resize {aug}"
    assert aug["crop"] == (0, 140, 704, 396) and not aug["flip"] and aug["rotate"] == 0, f"crop/flip/rotate {aug}"


def test_train_augmentation_draws_within_ranges(tiny_nuscenes):
    conf = dict(AUG, H=900, W=1600, final_dim=(256, 704), resize_lim=(0.40, 0.47), rot_lim=(-5.4, 5.4),
                rand_flip=True)
    dataset = build(tiny_nuscenes, data_aug_conf=conf)
    rng = np.random.RandomState(0)
    augs = [dataset.get_augmentation(rng=rng) for _ in range(50)]
    for aug in augs:
        new_w, new_h = aug["resize_dims"]
        assert 0.40 <= aug["resize"] <= 0.47 and -5.4 <= aug["rotate"] <= 5.4, f"out of range {aug}"
        assert aug["crop"][1] == new_h - 256 and 0 <= aug["crop"][0] <= max(0, new_w - 704), f"crop {aug}"
    assert {a["flip"] for a in augs} == {True, False}, "flip must be a fair coin"
    assert build(tiny_nuscenes, data_aug_conf=None).get_augmentation() is None, "no conf -> None"


def test_lidar2img_projects_a_point_on_each_optical_axis_to_the_principal_point(tiny_nuscenes):
    data = build(tiny_nuscenes).get_data_info(0)
    assert len(data["img_filename"]) == 6 and data["img_filename"][0].endswith("CAM_FRONT/s0f0.png"), "cams order"
    for view, yaw in enumerate((0.0, -55.0, 55.0, 180.0, 110.0, -110.0)):
        point = CAM_OFFSET + sensor2lidar_rotation(yaw) @ [0.0, 0.0, 7.0]
        cam = data["lidar2img"][view] @ np.append(point, 1.0)
        np.testing.assert_allclose(cam[:3] / cam[2], [16.0, 9.0, 1.0], atol=1e-9, err_msg=f"view {view} projection")
        assert cam[2] == pytest.approx(7.0), f"view {view}: depth along the optical axis"
        to_cam = data["lidar2cam"][view]
        np.testing.assert_allclose(to_cam @ np.append(point, 1.0), [0, 0, 7.0, 1.0], atol=1e-9,
                                   err_msg="lidar2cam must be the column-vector matrix")
    np.testing.assert_allclose(data["cam_intrinsic"][0], INTRINSIC, err_msg="intrinsics")
    assert data["timestamp"] == 0.0 and data["ego_status"].dtype == np.float32, "timestamp (s) / ego_status"


def test_ann_info_masks_names_and_velocities(tiny_nuscenes):
    infos = tiny_nuscenes["infos"]
    infos[0]["gt_velocity"][0] = np.nan
    infos[0]["num_lidar_pts"] = np.array([5, 0, 2])
    infos[0]["num_radar_pts"] = np.array([0, 3, 0])
    infos[0]["valid_flag"] = np.array([True, True, False])  # as if the animal's points were dropped
    write_infos(tiny_nuscenes["ann_file"], infos)
    ann = build(tiny_nuscenes).get_ann_info(0)
    assert ann["gt_bboxes_3d"].shape == (2, 9), "boxes without lidar points must be dropped (+ velocity columns)"
    np.testing.assert_array_equal(ann["gt_bboxes_3d"][0, 7:], [0.0, 0.0], err_msg="NaN velocity -> 0")
    np.testing.assert_array_equal(ann["gt_labels_3d"], [0, -1], err_msg="car -> 0, animal -> -1")
    np.testing.assert_array_equal(ann["instance_inds"], [0, 2], err_msg="instance ids masked")
    assert ann["gt_agent_fut_trajs"].shape == (2, 12, 2), "agent trajectories masked"
    valid = build(tiny_nuscenes, use_valid_flag=True).get_ann_info(0)
    np.testing.assert_array_equal(valid["gt_labels_3d"], [0, 0], err_msg="use_valid_flag must mask by valid_flag")


def test_future_boxes_are_moved_into_the_current_lidar_frame(tmp_path):
    root = str(tmp_path)
    box = np.array([[5.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    infos = [
        make_info(root, 0, 0, 0, ego_xy=(0.0, 0.0), boxes=box, names=["car"], num_lidar_pts=[1]),
        make_info(root, 0, 1, 500_000, ego_xy=(1.0, 0.0), boxes=box, names=["car"], num_lidar_pts=[1]),
        make_info(root, 0, 2, 1_000_000, ego_xy=(1.0, 2.0), ego_yaw=np.pi / 2, boxes=box, names=["car"],
                  num_lidar_pts=[1]),
        make_info(root, 1, 0, 1_500_000, boxes=box, names=["car"], num_lidar_pts=[1]),
    ]
    path = write_infos(str(tmp_path / "fut.pkl"), infos)
    fut = NuScenes3DDataset(ann_file=path, pipeline=[], classes=CLASS_NAMES).get_ann_info(0)["fut_boxes"]
    assert len(fut) == 2, f"stop at the scene change: {len(fut)} future frames"
    np.testing.assert_allclose(fut[0][0], [6.0, 0, 0, 4, 2, 1.5, 0], atol=1e-9, err_msg="1 m ahead: x + 1")
    # frame 2 sits at (1, 2) turned by 90 deg: its (5, 0) is global (1, 7), heading +y
    np.testing.assert_allclose(fut[1][0], [1.0, 7.0, 0, 4, 2, 1.5, np.pi / 2], atol=1e-9, err_msg="turned frame")


def test_test_split_infos_without_annotations(tiny_nuscenes, tmp_path):
    infos = tiny_nuscenes["infos"]
    annotation_keys = ["gt_boxes", "gt_names", "gt_velocity", "num_lidar_pts", "num_radar_pts", "valid_flag",
                       "instance_inds", "gt_agent_fut_trajs", "gt_agent_fut_masks", "gt_ego_fut_trajs",
                       "gt_ego_fut_masks", "gt_ego_fut_cmd", "ego_status"]
    for info in infos:
        for key in annotation_keys:
            info.pop(key)
    path = write_infos(str(tmp_path / "test.pkl"), infos, version="v1.0-test")
    data = NuScenes3DDataset(ann_file=path, pipeline=[], modality=CAMERA, test_mode=True).get_data_info(0)
    assert "gt_bboxes_3d" not in data and "ego_status" not in data, "test infos must load without GT"


def test_getitem_runs_the_train_pipeline(tiny_nuscenes):
    np.random.seed(0)
    dataset = build(tiny_nuscenes, with_seq_flag=True, sequences_split_num=2)
    aug = dataset.get_augmentation(rng=np.random.RandomState(0))
    sample = dataset[dict(idx=1, aug_config=aug)]
    assert tuple(sample["img"].data.shape) == (6, 3, 16, 24), f"img {sample['img'].data.shape}"
    assert sample["projection_mat"].shape == (6, 4, 4) and sample["image_wh"].tolist() == [[24.0, 16.0]] * 6, "proj"
    assert [d.shape for d in sample["gt_depth"]] == [(6, 4, 6), (6, 2, 3)], "depth maps per stride"
    np.testing.assert_allclose(sample["focal"], np.full(6, 20.0 * 0.75), err_msg="focal scaled by resize")
    assert sample["timestamp"] == pytest.approx(0.5), "timestamp in seconds"
    assert tuple(sample["gt_bboxes_3d"].data.shape) == (1, 9), "car at 70 m and the animal must be filtered out"
    assert sample["gt_labels_3d"].data.tolist() == [0], "labels"
    np.testing.assert_array_equal(sample["gt_map_labels"].data.numpy(), [1, 0, 2, 2], err_msg="map labels order")
    assert tuple(sample["gt_map_pts"].data.shape) == (4, 38, 20, 2), "map points"
    assert tuple(sample["gt_agent_fut_trajs"].data.shape) == (1, 12, 2), "agent trajectories filtered"
    assert tuple(sample["ego_status"].data.shape) == (10,) and sample["gt_ego_fut_cmd"].data.tolist() == [0, 0, 1]
    metas = sample["img_metas"].data
    assert set(metas) == {"T_global", "T_global_inv", "timestamp", "instance_id"}, f"meta keys {set(metas)}"
    np.testing.assert_allclose(metas["T_global"][:3, 3], [1.0, 0.0, 0.0], err_msg="T_global = lidar2global")
    assert metas["instance_id"].tolist() == [0], "instance ids follow the box filters"
    assert isinstance(sample["img"].data, torch.Tensor) and sample["img"].data.dtype == torch.float32, "img tensor"


def test_evaluate_delegates_to_the_evaluation_package(tiny_nuscenes, tmp_path):
    dataset = build(tiny_nuscenes, pipeline=[], test_mode=True, work_dir=str(tmp_path / "work"))
    results = []
    for info in dataset.data_infos:  # perfect map predictions
        lines = [(label, line) for label, group in info["map_annos"].items() for line in group]
        results.append(dict(img_bbox=dict(vectors=[line for _, line in lines], scores=np.ones(len(lines)),
                                          labels=np.array([label for label, _ in lines]))))
    mode = dict(with_det=False, with_tracking=False, with_map=True, with_motion=False, with_planning=False,
                tracking_threshold=0.2, motion_threshhold=0.2)
    metrics = dataset.evaluate(results, eval_mode=mode)
    for name in ("ped_crossing", "divider", "boundary", "mAP_normal"):
        assert metrics[name] == pytest.approx(1.0), f"perfect predictions must give {name} = 1, got {metrics[name]}"
    assert (tmp_path / "work" / "results_mini.pkl").is_file(), "raw results go to <work_dir>/results_mini.pkl"


def test_format_results_writes_the_nuscenes_submission(tiny_nuscenes, tmp_path):
    dataset = build(tiny_nuscenes, pipeline=[], test_mode=True)
    box = torch.tensor([[1.0, 10.0, 0.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0]])
    results = [dict(img_bbox=dict(boxes_3d=box, scores_3d=torch.tensor([0.9]), labels_3d=torch.tensor([0])))
               for _ in range(len(dataset))]
    files, tmp_dir = dataset.format_results(results, jsonfile_prefix=str(tmp_path / "json"))
    assert tmp_dir is None and files["img_bbox"].endswith("results_nusc.json"), f"paths {files}"
    import json

    with open(files["img_bbox"]) as f:
        submission = json.load(f)
    entries = submission["results"]["s0f0"]
    assert len(entries) == 1 and entries[0]["detection_name"] == "car", f"submission entry {entries}"


@pytest.mark.parametrize("content", ["empty", "truncated"])
def test_unreadable_info_pkl_is_one_oserror_naming_it(tiny_nuscenes, tmp_path, content):
    path = tmp_path / f"{content}_infos.pkl"
    with open(tiny_nuscenes["ann_file"], "rb") as f:
        data = f.read()
    path.write_bytes(b"" if content == "empty" else data[: len(data) // 2])
    with pytest.raises(OSError, match=rf"info pkl {path} cannot be read .*sh test/preprocess\.sh"):
        NuScenes3DDataset(ann_file=str(path), pipeline=TRAIN_PIPELINE, classes=CLASS_NAMES, modality=CAMERA)


def test_missing_info_pkl_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"data/infos/x\.pkl does not exist \(looked at {tmp_path}/data"):
        NuScenes3DDataset(ann_file="data/infos/x.pkl", classes=CLASS_NAMES, modality=CAMERA)


EVAL_MODE = dict(with_det=True, with_tracking=True, with_map=True, with_motion=False, with_planning=False,
                 tracking_threshold=0.2)


def test_eval_metric_names_select_groups():
    select = NuScenes3DDataset.select_eval_mode
    assert select(EVAL_MODE, None) == EVAL_MODE and select(EVAL_MODE, "bbox") == EVAL_MODE, \
        "no metric / 'bbox' keeps the config's eval_mode"
    assert select(EVAL_MODE, ["map"]) == dict(EVAL_MODE, with_det=False, with_tracking=False), "only the map group"
    assert select(EVAL_MODE, ["tracking", "planning"]) == dict(
        EVAL_MODE, with_map=False, with_planning=True), "tracking needs detection; planning is switched on"


def test_unknown_eval_metric_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"metric 'foo' is not known; use bbox, det, tracking, map, motion, planning"):
        NuScenes3DDataset.select_eval_mode(EVAL_MODE, ["bbox", "foo"])
