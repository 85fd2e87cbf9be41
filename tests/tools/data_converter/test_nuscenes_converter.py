"""Info pkls from the converter: schema, and values checked against the raw tables and a hand-built scene."""
import math
import os
import pickle

import numpy as np
import pytest

from tools.data_converter import nuscenes_converter as conv
from tools.data_converter import synthetic_nuscenes, synthetic_world

CAMS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
ANNO_KEYS = ["gt_boxes", "gt_names", "gt_velocity", "num_lidar_pts", "num_radar_pts", "valid_flag", "instance_inds",
             "gt_agent_fut_trajs", "gt_agent_fut_masks", "gt_ego_fut_trajs", "gt_ego_fut_masks", "gt_ego_fut_cmd",
             "ego_status"]


def _quat_yaw(q) -> float:
    w, x, y, z = q
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def _global2lidar(info: dict) -> np.ndarray:
    """Inverse of ego2global @ lidar2ego built from yaw angles only (all poses are level here)."""
    def mat(t, q):
        c, s = math.cos(_quat_yaw(q)), math.sin(_quat_yaw(q))
        m = np.eye(4)
        m[:2, :2] = [[c, -s], [s, c]]
        m[:3, 3] = t
        return m
    return np.linalg.inv(mat(info["ego2global_translation"], info["ego2global_rotation"])
                         @ mat(info["lidar2ego_translation"], info["lidar2ego_rotation"]))


def _to_lidar(info: dict, xyz) -> np.ndarray:
    return (_global2lidar(info) @ np.append(np.asarray(xyz, dtype=float), 1.0))[:3]


def test_info_schema_fields_shapes_and_dtypes(infos):
    assert infos["version"] == "v1.0-mini"
    assert len(infos["train"]) == 14 and len(infos["val"]) == 14, "one scene per split, 14 key frames each"
    for info in infos["train"] + infos["val"]:
        assert list(info["cams"]) == CAMS, "camera order must be upstream's"
        for cam in info["cams"].values():
            assert cam["sensor2lidar_rotation"].shape == (3, 3) and cam["cam_intrinsic"].shape == (3, 3)
            assert cam["sensor2lidar_translation"].shape == (3,)
            assert os.path.isfile(cam["data_path"]), "camera file %s missing" % cam["data_path"]
        n = len(info["gt_boxes"])
        assert info["gt_boxes"].dtype == np.float64 and info["gt_boxes"].shape == (n, 7)
        assert info["gt_velocity"].shape == (n, 2) and info["valid_flag"].dtype == bool
        assert info["gt_agent_fut_trajs"].shape == (n, 12, 2) and info["gt_agent_fut_trajs"].dtype == np.float32
        assert info["gt_agent_fut_masks"].shape == (n, 12) and info["gt_agent_fut_masks"].dtype == np.float32
        assert info["gt_ego_fut_trajs"].shape == (6, 2) and info["gt_ego_fut_masks"].shape == (6,)
        assert info["gt_ego_fut_cmd"].shape == (3,) and info["gt_ego_fut_cmd"].sum() == 1
        assert info["ego_status"].shape == (10,) and info["ego_status"].dtype == np.float32
        assert isinstance(info["instance_inds"], list) and len(info["instance_inds"]) == n
        assert list(info["map_annos"]) == [1, 0, 2], "map_annos keys keep the extractor's order"
        assert len(info["sweeps"]) <= 10 and isinstance(info["timestamp"], int)
    first = min(infos["train"], key=lambda i: i["timestamp"])
    assert first["sweeps"] == [], "first key frame of a scene has no sweeps"


def test_boxes_and_velocities_agree_with_annotations(infos, nusc):
    for info in infos["train"][::3]:
        sample = nusc.get("sample", info["token"])
        for i, tok in enumerate(sample["anns"]):
            ann = nusc.get("sample_annotation", tok)
            assert np.allclose(info["gt_boxes"][i, :3], _to_lidar(info, ann["translation"]), atol=1e-6)
            w, l, h = ann["size"]
            assert np.allclose(info["gt_boxes"][i, 3:6], [l, w, h]), "sizes must be (l, w, h)"
            yaw = _quat_yaw(ann["rotation"])
            yaw_lidar = math.atan2(*(_global2lidar(info)[:2, :2] @ [math.cos(yaw), math.sin(yaw)])[::-1])
            assert abs(math.remainder(info["gt_boxes"][i, 6] - yaw_lidar, 2 * math.pi)) < 1e-6
            if ann["next"] and ann["prev"]:
                p0 = nusc.get("sample_annotation", ann["prev"])["translation"]
                p1 = nusc.get("sample_annotation", ann["next"])["translation"]
                v = (_global2lidar(info)[:2, :2] @ (np.subtract(p1, p0)[:2] / 1.0))
                assert np.allclose(info["gt_velocity"][i], v, atol=1e-6), "velocity is the centred difference"


def test_agent_futures_agree_with_the_annotation_chain(infos, nusc):
    checked = 0
    for info in infos["train"]:
        sample = nusc.get("sample", info["token"])
        for i, tok in enumerate(sample["anns"]):
            future, ann = [], nusc.get("sample_annotation", tok)
            while ann["next"] and len(future) < 12:
                ann = nusc.get("sample_annotation", ann["next"])
                future.append(_to_lidar(info, ann["translation"])[:2])
            mask = info["gt_agent_fut_masks"][i]
            assert mask.sum() == len(future) and np.all(mask[:len(future)] == 1), "mask = available future steps"
            if future:
                pos = np.cumsum(info["gt_agent_fut_trajs"][i], axis=0)[:len(future)] + info["gt_boxes"][i, :2]
                assert np.allclose(pos, future, atol=1e-3), "cumsum of displacements must hit the annotations"
                checked += 1
    assert checked > 20


def test_ego_future_status_and_command_agree_with_poses(infos, nusc, synthetic):
    for split, world in (("train", synthetic["worlds"][0]), ("val", synthetic["worlds"][1])):
        seq = sorted(infos[split], key=lambda i: i["timestamp"])
        commands = set()
        for k, info in enumerate(seq):
            fut = seq[k + 1:k + 7]
            lidar_xy = []
            for f in fut:
                g = np.linalg.inv(_global2lidar(f))[:3, 3]
                lidar_xy.append(_to_lidar(info, g)[:2])
            mask = info["gt_ego_fut_masks"]
            assert mask.sum() == len(fut), "ego mask = number of future key frames (max 6)"
            pos = np.cumsum(info["gt_ego_fut_trajs"], axis=0)
            if fut:
                assert np.allclose(pos[:len(fut)], lidar_xy, atol=1e-4), "ego future != future lidar origins"
            last_x = pos[-1, 0]
            expected = 0 if last_x >= 2 else 1 if last_x <= -2 else 2
            assert info["gt_ego_fut_cmd"].argmax() == expected
            commands.add(int(expected))
            t = (info["timestamp"] - seq[0]["timestamp"]) * 1e-6
            assert abs(info["ego_status"][6] - world.ego.speed(t)) < 1e-3, "ego_status vel_x != ego speed"
            assert abs(info["ego_status"][2] - 9.81) < 1e-6, "accel z carries gravity as in nuScenes"
        expected_cmd = {"left": 1, "straight": 2, "right": 0}[world.ego.maneuver]
        assert expected_cmd in commands, "%s scene must produce its own command" % world.ego.maneuver


def test_map_polylines_lie_in_the_roi(infos):
    n = {0: 0, 1: 0, 2: 0}
    for info in infos["train"] + infos["val"]:
        for label, lines in info["map_annos"].items():
            for line in lines:
                n[label] += 1
                assert line.dtype == np.float64 and line.ndim == 2 and line.shape[1] == 2 and len(line) >= 2
                bound = (15.0, 30.0) if label != 2 else (14.8, 29.8)
                assert np.all(np.abs(line) <= np.array(bound) + 1e-6), "label %d polyline leaves the ROI" % label
    assert min(n.values()) > 0, "all three map classes must occur: %s" % n


def test_test_mode_infos_have_no_annotations(synthetic, nusc):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus
    from nuscenes.prediction import PredictHelper

    from tools.data_converter.nuscenes_map_extractor import NuscMapExtractor

    loc = nusc.get("log", nusc.scene[0]["log_token"])["location"]
    info = conv.sample_info(nusc, PredictHelper(nusc), NuScenesCanBus(dataroot=synthetic["root"]),
                            NuscMapExtractor(synthetic["root"], (30, 60), locations=[loc]), nusc.sample[0],
                            test=True, max_sweeps=10)
    assert not set(ANNO_KEYS) & set(info), "test-mode infos must not carry annotation keys"
    assert "map_annos" in info and len(info["cams"]) == 6


def test_missing_table_gives_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "v1.0-mini").mkdir()
    with pytest.raises(SystemExit) as exc:
        conv.main(["nuscenes", "--root-path", str(tmp_path), "--canbus", str(tmp_path), "--version", "v1.0-mini",
                   "--out-dir", str(tmp_path / "infos")])
    msg = str(exc.value.code)
    assert "v1.0-mini/attribute.json is missing" in msg and "\n" not in msg


def test_locate_message_prefers_the_later_message_on_ties():
    assert conv.locate_message([0, 10, 20], 5) == 1
    assert conv.locate_message([0, 10, 20], 4) == 0
    assert conv.locate_message([0, 10, 20], 99) == 2
    assert conv.locate_message([0, 10, 20], -5) == 0


def test_hand_built_two_sample_scene(tmp_path, monkeypatch):
    """Ego drives east at 4 m/s on y = 498.25; one car drives north at 6 m/s on x = 460; values by hand."""
    def hand_world(index, slot, num_agents, num_samples, rng, reach):
        ego = synthetic_world.Ego(path=synthetic_world.Path(np.array([[300.0, 498.25], [700.0, 498.25]])),
                                  s0=150.0, v0=4.0, accel=0.0, maneuver="straight")
        car = synthetic_world.Agent("vehicle.car", (1.9, 4.6, 1.7),
                                    synthetic_world.Path(np.array([[460.0, 300.0], [460.0, 700.0]])),
                                    s0=180.0, speed=6.0, color=(200, 40, 40))
        return synthetic_world.SceneWorld(center=np.array([500.0, 500.0]), rotation=0.0, ego=ego, agents=[car])

    monkeypatch.setattr(synthetic_world, "build_scene", hand_world)
    root = tmp_path / "hand"
    synthetic_nuscenes.generate(str(root), scenes=1, samples=2, agents=1, sweeps=0, seed=0)
    train, _ = conv.create_nuscenes_infos(str(root), str(tmp_path / "infos"), str(root), "nuscenes",
                                          version="v1.0-mini")
    with open(train, "rb") as f:
        i0, i1 = sorted(pickle.load(f)["infos"], key=lambda i: i["timestamp"])
    # lidar at t=0: ego (450, 498.25) + 0.943713 m forward; lidar x = -global y, lidar y = +global x
    lx, ly, lz = 450.943713, 498.25, 1.84023
    assert np.allclose(i0["gt_boxes"][0, :6], [-(480.0 - ly), 460.0 - lx, 0.85 - lz, 4.6, 1.9, 1.7], atol=1e-6)
    assert abs(math.remainder(i0["gt_boxes"][0, 6] - math.pi, 2 * math.pi)) < 1e-6, "heading north = lidar -x"
    assert np.allclose(i0["gt_velocity"][0], [-6.0, 0.0], atol=1e-6)
    assert list(i0["gt_names"]) == ["car"] and i0["instance_inds"] == [0] and i0["valid_flag"].all()
    assert np.allclose(i0["gt_agent_fut_trajs"][0, 0], [-3.0, 0.0], atol=1e-6)
    assert i0["gt_agent_fut_masks"][0].tolist() == [1] + [0] * 11
    assert i1["gt_agent_fut_masks"].sum() == 0 and np.allclose(i1["gt_velocity"][0], [-6.0, 0.0], atol=1e-6)
    assert np.allclose(i0["gt_ego_fut_trajs"], [[0.0, 2.0]] + [[0.0, 0.0]] * 5, atol=1e-6)
    assert i0["gt_ego_fut_masks"].tolist() == [1, 0, 0, 0, 0, 0]
    assert i0["gt_ego_fut_cmd"].tolist() == [0, 0, 1] and i1["gt_ego_fut_masks"].sum() == 0
    assert np.allclose(i0["ego_status"], [0, 0, 9.81, 0, 0, 0, 4.0, 0, 0, 0], atol=1e-5)
    assert i0["sweeps"] == [] and len(i1["sweeps"]) == 1
    assert np.allclose(i1["sweeps"][0]["sensor2lidar_translation"], [0.0, -2.0, 0.0], atol=1e-6)
    assert np.allclose(i1["sweeps"][0]["sensor2lidar_rotation"], np.eye(3), atol=1e-9)
    # CAM_FRONT fires 12 ms after the lidar: ego 0.048 m further; camera 1.70 m ahead, 0.02 m left, 1.51 m up
    assert np.allclose(i0["cams"]["CAM_FRONT"]["sensor2lidar_translation"],
                       [-0.02, 450.048 + 1.70 - lx, 1.51 - lz], atol=1e-6)
    # map: west arm (road y in [493, 507]); dividers at y = 503.5, 500, 496.5 -> lidar x = -5.25, -1.75, 1.75
    dividers = sorted(float(line[0, 0]) for line in i0["map_annos"][1])
    assert np.allclose(dividers, [-5.25, -1.75, 1.75], atol=1e-6)
    for line in i0["map_annos"][1]:
        assert np.allclose(sorted(line[:, 1]), [-30.0, 30.0], atol=1e-6), "dividers cross the whole ROI"
    assert i0["map_annos"][0] == [], "the crosswalk (x 481..485) lies just beyond the ROI (y <= 30)"
    bounds = {round(float(line[0, 0]), 6): line for line in i0["map_annos"][2]}
    assert sorted(bounds) == [-8.75, 5.25], "road edges y = 507 and 493"
    assert bounds[5.25][0, 1] > bounds[5.25][-1, 1], "right road edge runs backwards (road on its right)"
    assert bounds[-8.75][0, 1] < bounds[-8.75][-1, 1], "left road edge runs forwards (road on its right)"


def test_scene_without_can_bus_gets_zero_ego_status_and_a_warning(tmp_path, caplog):
    root = tmp_path / "no_can"
    synthetic_nuscenes.generate(str(root), scenes=1, samples=2, agents=1, sweeps=0, seed=1)
    (root / "can_bus" / "scene-0061_pose.json").unlink()
    with caplog.at_level("WARNING", logger="nuscenes_converter"):
        train, _ = conv.create_nuscenes_infos(str(root), str(tmp_path / "infos"), str(root), "nuscenes",
                                              version="v1.0-mini")
    with open(train, "rb") as f:
        infos = pickle.load(f)["infos"]
    assert all(not i["ego_status"].any() for i in infos), "missing CAN bus must give zero ego_status"
    assert "scene-0061" in caplog.text, "the scene without CAN bus must be named in a warning"
