"""The synthetic generator writes a dataset the nuScenes devkit reads unchanged, with consistent geometry."""
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from tools.data_converter import synthetic_nuscenes, synthetic_sensors, synthetic_world

# field -> table that a token in that field must resolve in
TOKEN_FIELDS = {
    "category_token": "category", "instance_token": "instance", "sensor_token": "sensor",
    "calibrated_sensor_token": "calibrated_sensor", "ego_pose_token": "ego_pose", "log_token": "log",
    "scene_token": "scene", "sample_token": "sample", "visibility_token": "visibility",
    "first_sample_token": "sample", "last_sample_token": "sample",
    "first_annotation_token": "sample_annotation", "last_annotation_token": "sample_annotation",
}
LINKED = {"sample": "sample", "sample_data": "sample_data", "sample_annotation": "sample_annotation"}


def _pose(rec) -> np.ndarray:
    from pyquaternion import Quaternion

    m = np.eye(4)
    m[:3, :3] = Quaternion(rec["rotation"]).rotation_matrix
    m[:3, 3] = rec["translation"]
    return m


def test_devkit_loads_and_every_token_resolves(nusc, synthetic):
    assert [s["name"] for s in nusc.scene] == ["scene-0061", "scene-0103"], "scene names must be mini names"
    for table in nusc.table_names:
        for rec in getattr(nusc, table):
            for key, target in TOKEN_FIELDS.items():
                if key in rec:
                    nusc.get(target, rec[key])  # raises KeyError when dangling
            if table in LINKED:
                for key in ("prev", "next"):
                    if rec[key]:
                        other = nusc.get(table, rec[key])
                        assert other["prev" if key == "next" else "next"] == rec["token"], \
                            "%s %s: %s link is not mirrored" % (table, rec["token"], key)
            for tok in rec.get("attribute_tokens", []):
                nusc.get("attribute", tok)
            if "log_tokens" in rec:
                for tok in rec["log_tokens"]:
                    nusc.get("log", tok)
    for scene in nusc.scene:
        n, tok = 0, scene["first_sample_token"]
        while tok:
            sample = nusc.get("sample", tok)
            assert set(sample["data"]) == {"LIDAR_TOP"} | {c[0] for c in synthetic_sensors.CAMERAS}, \
                "each key frame needs LIDAR_TOP and six cameras"
            n, tok = n + 1, sample["next"]
        assert n == scene["nbr_samples"] == synthetic["samples"], "sample chain length != nbr_samples"
    for inst in nusc.instance:
        n, tok = 0, inst["first_annotation_token"]
        while tok:
            n, tok = n + 1, nusc.get("sample_annotation", tok)["next"]
        assert n == inst["nbr_annotations"], "instance %s: annotation chain length mismatch" % inst["token"]
    for sd in nusc.sample_data:
        assert os.path.isfile(os.path.join(synthetic["root"], sd["filename"])), "%s missing" % sd["filename"]


def test_key_frames_are_2hz_and_lidar_files_hold_5_floats(nusc, synthetic):
    times = [s["timestamp"] for s in nusc.sample if s["scene_token"] == nusc.scene[0]["token"]]
    assert np.all(np.diff(times) == 500000), "key frames must be 0.5 s apart"
    sd = nusc.get("sample_data", nusc.sample[0]["data"]["LIDAR_TOP"])
    raw = np.fromfile(os.path.join(synthetic["root"], sd["filename"]), dtype=np.float32)
    assert raw.size % 5 == 0 and raw.size > 5000, "lidar file must be N x 5 float32 with many points"
    pts = raw.reshape(-1, 5)
    assert np.abs(pts[:, 2].min() + synthetic_sensors.LIDAR_TRANSLATION[2]) < 0.2, "ground must be at -lidar height"
    img = Image.open(os.path.join(synthetic["root"], nusc.get("sample_data", nusc.sample[0]["data"]["CAM_FRONT"])
                                  ["filename"]))
    assert img.size == (1600, 900) and img.format == "JPEG", "images must be 1600x900 JPEG"


def test_annotations_have_eval_fields_and_lidar_points_match_the_point_cloud(nusc, synthetic):
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box

    names = {nusc.get("category", i["category_token"])["name"] for i in nusc.instance}
    for cls in ("vehicle.car", "human.pedestrian.adult", "vehicle.truck", "movable_object.barrier"):
        assert cls in names, "class %s missing from the generated agents" % cls
    sample = nusc.sample[3]
    path, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
    cloud = LidarPointCloud.from_file(path).points[:3]
    for box, ann_token in zip(boxes, sample["anns"]):
        ann = nusc.get("sample_annotation", ann_token)
        assert len(ann["attribute_tokens"]) <= 1 and ann["visibility_token"] in "1234"
        inside = int(points_in_box(box, cloud, wlh_factor=1.1).sum())
        assert abs(inside - ann["num_lidar_pts"]) <= max(3, 0.2 * ann["num_lidar_pts"]), \
            "num_lidar_pts %d but %d points inside the box" % (ann["num_lidar_pts"], inside)


def test_boxes_project_into_the_cameras_that_see_them(nusc, synthetic):
    """A box in front of a camera is drawn there: the image differs from a box-free render at its centre,
    and matches the box-free render elsewhere (so the tables' camera poses are the rendering poses)."""
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points

    scene_idx = 0
    world = synthetic["worlds"][scene_idx]
    ground = synthetic_sensors.ground_paint(world)
    checked = 0
    for sample in [s for s in nusc.sample if s["scene_token"] == nusc.scene[scene_idx]["token"]][::4]:
        for channel, *_ in synthetic_sensors.CAMERAS:
            sd = nusc.get("sample_data", sample["data"][channel])
            cam2global = _pose(nusc.get("ego_pose", sd["ego_pose_token"])) @ _pose(
                nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))
            path, boxes, K = nusc.get_sample_data(sd["token"], box_vis_level=BoxVisibility.ALL)
            image = np.asarray(Image.open(path), dtype=np.float32)
            empty = np.asarray(synthetic_sensors.render_camera(ground, [], cam2global, K, world.brightness),
                               dtype=np.float32)
            covered = np.zeros(image.shape[:2], dtype=bool)
            for box in boxes:
                corners = view_points(box.corners(), K, normalize=True)[:2]
                u0, v0 = np.floor(corners.min(axis=1)).astype(int) - 3
                u1, v1 = np.ceil(corners.max(axis=1)).astype(int) + 3
                covered[max(v0, 0):max(v1, 0), max(u0, 0):max(u1, 0)] = True
                if box.center[2] < 40 and (u1 - u0) > 12:
                    u, v = view_points(box.center[:, None], K, normalize=True)[:2, 0].astype(int)
                    diff = np.abs(image[v - 2:v + 3, u - 2:u + 3] - empty[v - 2:v + 3, u - 2:u + 3]).mean()
                    assert diff > 15, "%s: box %s not drawn at its projection (diff %.1f)" % (channel, box.name, diff)
                    checked += 1
            background = np.abs(image - empty).mean(axis=2)[~covered]
            assert np.median(background) < 6, "%s: background differs from a re-render: camera pose mismatch" % channel
    assert checked >= 5, "too few visible boxes checked (%d)" % checked


def test_map_api_returns_lanes_and_the_ego_drives_on_them(nusc, synthetic):
    from nuscenes.map_expansion.map_api import NuScenesMap

    for scene in nusc.scene:
        location = nusc.get("log", scene["log_token"])["location"]
        nmap = NuScenesMap(dataroot=synthetic["root"], map_name=location)
        assert len(nmap.lane) == 16 and len(nmap.ped_crossing) == 4, "one intersection: 16 lanes, 4 crossings"
        sample = nusc.get("sample", scene["first_sample_token"])
        pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
        x, y = pose["translation"][:2]
        lane = nmap.get_closest_lane(x, y, radius=3.0)
        assert lane, "the ego must start on a lane"
        assert nmap.layers_on_point(x, y)["road_segment"], "the ego must be on a road segment"
        path = nmap.discretize_lanes([lane], 1.0)[lane]
        assert min(math.dist((x, y), p[:2]) for p in path) < 0.5, "ego must be on its lane's centre line"


def test_can_bus_pose_matches_ego_poses(nusc, synthetic):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    can = NuScenesCanBus(dataroot=synthetic["root"])
    scene = nusc.scene[1]
    pose_msgs = can.get_messages(scene["name"], "pose")
    steer = can.get_messages(scene["name"], "steeranglefeedback")
    assert len(steer) > len(pose_msgs) > 0, "steering at 100 Hz, pose at 50 Hz"
    sample = nusc.get("sample", scene["first_sample_token"])
    ego = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
    msg = min(pose_msgs, key=lambda m: abs(m["utime"] - sample["timestamp"]))
    assert np.allclose(msg["pos"][:2], ego["translation"][:2], atol=1e-6), "CAN pose != ego_pose"
    nxt = nusc.get("sample", sample["next"])
    ego2 = nusc.get("ego_pose", nusc.get("sample_data", nxt["data"]["LIDAR_TOP"])["ego_pose_token"])
    speed = math.dist(ego["translation"][:2], ego2["translation"][:2]) / 0.5
    assert abs(msg["vel"][0] - speed) < 0.3, "CAN speed %.2f vs pose speed %.2f" % (msg["vel"][0], speed)


def test_generation_is_deterministic_and_refuses_foreign_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        synthetic_nuscenes.generate(str(out), scenes=1, samples=2, agents=3, sweeps=0, seed=7)
    for table in ("sample_annotation", "ego_pose", "instance"):
        assert (a / "v1.0-mini" / (table + ".json")).read_text() == (b / "v1.0-mini" / (table + ".json")).read_text(), \
            "%s differs between two runs with the same seed" % table
    foreign = tmp_path / "nuscenes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("real data")
    with pytest.raises(SystemExit, match="not a synthetic dataset"):
        synthetic_nuscenes.generate(str(foreign), scenes=1, samples=2, agents=1)
    assert (foreign / "keep.txt").exists()


def test_all_three_maneuvers_occur_by_default():
    rng = np.random.default_rng(0)
    maneuvers = {synthetic_world.build_scene(i, 0, 0, 16, rng).ego.maneuver for i in range(3)}
    assert maneuvers == {"left", "straight", "right"}


@pytest.mark.parametrize("reach", [25.0, 70.0])
def test_agents_start_within_reach_of_the_intersection(reach):
    """Start positions (t = 0) lie within `reach` beyond the intersection box, plus the road's and box's halves."""
    rng = np.random.default_rng(3)
    distances = []
    for i in range(6):
        world = synthetic_world.build_scene(i, 0, 16, 8, rng, reach=reach)
        for agent in world.agents:
            x, y = agent.pose(0.0)[:2]
            distances.append(np.hypot(x - world.center[0], y - world.center[1]) - 0.5 * agent.size[1])
    slack = synthetic_world.INNER + synthetic_world.HALF_ROAD + synthetic_world.SIDEWALK
    assert len(distances) > 60
    assert max(distances) <= reach + slack
    assert max(distances) > 0.8 * reach  # the reach is used, not only a floor


def test_generate_rejects_a_non_positive_reach(tmp_path):
    with pytest.raises(ValueError, match="reach"):
        synthetic_nuscenes.generate(str(tmp_path / "out"), scenes=1, samples=2, agents=1, reach=0.0)


def test_devkit_detection_eval_scores_ground_truth_as_perfect(nusc, tmp_path):
    """mini_val works with the devkit's DetectionEval: GT submitted as predictions scores AP ~1, zero errors."""
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    from tools.data_converter.nuscenes_converter import NAME_MAPPING

    val_scene = nusc.scene[1]["token"]
    results = {}
    for sample in nusc.sample:
        if sample["scene_token"] != val_scene:
            continue
        results[sample["token"]] = []
        for tok in sample["anns"]:
            ann = nusc.get("sample_annotation", tok)
            name = NAME_MAPPING.get(ann["category_name"])
            if name is None or ann["num_lidar_pts"] + ann["num_radar_pts"] == 0:
                continue
            vel = np.nan_to_num(nusc.box_velocity(tok)[:2]).tolist()
            attr = nusc.get("attribute", ann["attribute_tokens"][0])["name"] if ann["attribute_tokens"] else ""
            results[sample["token"]].append(dict(
                sample_token=sample["token"], translation=ann["translation"], size=ann["size"],
                rotation=ann["rotation"], velocity=vel, detection_name=name, detection_score=0.9,
                attribute_name=attr))
    meta = dict(use_camera=True, use_lidar=False, use_radar=False, use_map=False, use_external=False)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(dict(meta=meta, results=results)))
    evaluator = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), "mini_val", str(tmp_path),
                              verbose=False)
    metrics = evaluator.evaluate()[0].serialize()
    present = {box.detection_name for box in evaluator.gt_boxes.all}  # after the eval's range filter
    assert len(present) >= 5, "the val scene should hold several classes: %s" % present
    for name in present:
        ap = metrics["mean_dist_aps"][name]
        assert ap > 0.95, "GT as predictions must score AP ~1 for %s, got %.3f" % (name, ap)
        errors = metrics["label_tp_errors"][name]
        assert errors["trans_err"] < 1e-6 and errors["scale_err"] < 1e-6, "%s: nonzero TP errors" % name
