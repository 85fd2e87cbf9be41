"""nuScenes -> SparseDrive info pkls (upstream's converter: same CLI, file names and info fields).

    python tools/data_converter/nuscenes_converter.py nuscenes --root-path ./data/nuscenes \
        --canbus ./data/nuscenes --out-dir ./data/infos/ --extra-tag nuscenes --version v1.0

`--version v1.0` converts v1.0-trainval and then v1.0-test (skipped with a warning when the dataroot has
no v1.0-test/); `v1.0-trainval`, `v1.0-test` and `v1.0-mini` convert one version (mini writes to
<out-dir>/mini/). Output: <extra-tag>_infos_{train,val}.pkl or <extra-tag>_infos_test.pkl, each
{infos: [one dict per key frame], metadata: {version}}. Frames: boxes, trajectories and map polylines
are in the key-frame LIDAR_TOP frame (x right, y forward, z up).
"""
import argparse
import logging
import os
import pickle
import sys
from typing import List, Optional, Sequence, Set, Tuple

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.data_converter.nuscenes_map_extractor import NuscMapExtractor, geom2anno  # noqa: E402

logger = logging.getLogger("nuscenes_converter")

NAME_MAPPING = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}
CAMERA_TYPES = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")
FUT_TS = 12  # agent future steps (6 s at 2 Hz)
EGO_FUT_TS = 6  # ego future steps (3 s)


class DataRootError(FileNotFoundError):
    """The dataroot lacks a file the converter needs."""


def check_dataroot(root_path: str, version: str, can_bus_root: str) -> None:
    """Raise DataRootError naming the first missing metadata table or expansion folder."""
    for table in TABLES:
        path = os.path.join(root_path, version, table + ".json")
        if not os.path.isfile(path):
            raise DataRootError("%s is missing (nuScenes %s table '%s'); check --root-path / --version."
                                % (path, version, table))
    if not os.path.isdir(os.path.join(root_path, "maps", "expansion")):
        raise DataRootError("%s is missing; install the nuScenes map expansion (v1.3) under --root-path."
                            % os.path.join(root_path, "maps", "expansion"))
    if not os.path.isdir(os.path.join(can_bus_root, "can_bus")):
        raise DataRootError("%s is missing; install the nuScenes CAN bus expansion under --canbus."
                            % os.path.join(can_bus_root, "can_bus"))


def _quat_matrix(q: Sequence[float]) -> np.ndarray:
    from pyquaternion import Quaternion

    return Quaternion(q).rotation_matrix


def _transform(translation: Sequence[float], rotation: Sequence[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _quat_matrix(rotation)
    m[:3, 3] = translation
    return m


def locate_message(utimes: Sequence[int], utime: int) -> int:
    """Index of the message nearest to utime; ties go to the later message, past the end to the last."""
    i = int(np.searchsorted(utimes, utime))
    if i == len(utimes) or (i > 0 and utime - utimes[i - 1] < utimes[i] - utime):
        i -= 1
    return i


def get_ego_status(nusc, can_bus, sample: dict) -> np.ndarray:
    """CAN-bus ego state at the sample time: accel (3), rotation_rate (3), vel (3) in the ego frame and the
    steering angle (positive left), [10] float32; zeros when the scene has no usable CAN-bus data."""
    scene_name = nusc.get("scene", sample["scene_token"])["name"]
    try:
        pose = can_bus.get_messages(scene_name, "pose", print_warnings=False)
        steer = can_bus.get_messages(scene_name, "steeranglefeedback", print_warnings=False)
        p = pose[locate_message([m["utime"] for m in pose], sample["timestamp"])]
        s = steer[locate_message([m["utime"] for m in steer], sample["timestamp"])]
        status = list(p["accel"]) + list(p["rotation_rate"]) + list(p["vel"]) + [s["value"]]
    except Exception as e:  # the devkit raises plain Exception (blacklisted scene) or AssertionError (name)
        # Upstream keeps a zero status for scenes without CAN bus; create_nuscenes_infos lists those scenes.
        logger.debug("ego_status of %s is zero: %s", scene_name, e)
        status = [0.0] * 10
    return np.array(status, dtype=np.float32)


def obtain_sensor2top(nusc, sensor_token: str, l2e_t: np.ndarray, l2e_r_mat: np.ndarray, e2g_t: np.ndarray,
                      e2g_r_mat: np.ndarray, sensor_type: str = "lidar") -> dict:
    """One camera / sweep entry with its transform into the key-frame lidar frame.

    sensor -> ego (sensor time) -> global -> ego (key-frame lidar time) -> lidar;
    p_lidar = sensor2lidar_rotation @ p_sensor + sensor2lidar_translation.
    """
    sd = nusc.get("sample_data", sensor_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    data_path = str(nusc.get_sample_data_path(sd["token"]))
    cwd = os.getcwd() + "/"
    if cwd in data_path:
        data_path = data_path.split(cwd)[-1]
    entry = {
        "data_path": data_path,
        "type": sensor_type,
        "sample_data_token": sd["token"],
        "sensor2ego_translation": cs["translation"],
        "sensor2ego_rotation": cs["rotation"],
        "ego2global_translation": pose["translation"],
        "ego2global_rotation": pose["rotation"],
        "timestamp": sd["timestamp"],
    }
    ls_r, es_r = _quat_matrix(cs["rotation"]), _quat_matrix(pose["rotation"])
    l_inv, e_inv = np.linalg.inv(l2e_r_mat), np.linalg.inv(e2g_r_mat)
    entry["sensor2lidar_rotation"] = l_inv @ e_inv @ es_r @ ls_r
    global_pt = es_r @ np.asarray(cs["translation"]) + np.asarray(pose["translation"])
    entry["sensor2lidar_translation"] = l_inv @ (e_inv @ (global_pt - e2g_t) - l2e_t)
    return entry


def ego_future(nusc, sample: dict, ego_pose: dict, lidar_calib: dict,
               steps: int = EGO_FUT_TS) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ego future displacements [steps, 2], mask [steps] and command one-hot [3] (right, left, straight).

    Positions are the global LIDAR_TOP origins of this and the next `steps` key frames, in the current lidar
    frame; a scene end repeats the last position (mask 0), and the command uses the lateral (x) offset of the
    last row (upstream quirk: padded samples lean to 'straight').
    """
    traj = np.zeros((steps + 1, 3))
    mask = np.zeros(steps + 1)
    cur = sample
    for i in range(steps + 1):
        sd = nusc.get("sample_data", cur["data"]["LIDAR_TOP"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        lidar2global = _transform(pose["translation"], pose["rotation"]) @ _transform(cs["translation"], cs["rotation"])
        traj[i] = lidar2global[:3, 3]
        mask[i] = 1
        if cur["next"] == "":
            traj[i + 1:] = traj[i]
            break
        cur = nusc.get("sample", cur["next"])
    traj = (traj - np.asarray(ego_pose["translation"])) @ _quat_matrix(ego_pose["rotation"])
    traj = (traj - np.asarray(lidar_calib["translation"])) @ _quat_matrix(lidar_calib["rotation"])
    if traj[-1, 0] >= 2:
        command = np.array([1, 0, 0])
    elif traj[-1, 0] <= -2:
        command = np.array([0, 1, 0])
    else:
        command = np.array([0, 0, 1])
    return ((traj[1:] - traj[:-1])[:, :2].astype(np.float32), mask[1:].astype(np.float32),
            command.astype(np.float32))


def agent_futures(helper, sample_token: str, annotations: List[dict], boxes: list,
                  steps: int = FUT_TS) -> Tuple[np.ndarray, np.ndarray]:
    """Future per-step displacements [N, steps, 2] (lidar frame) and masks [N, steps] of each annotation."""
    from nuscenes.prediction import convert_local_coords_to_global
    from pyquaternion import Quaternion

    trajs = np.zeros((len(boxes), steps, 2))
    masks = np.zeros((len(boxes), steps))
    for i, (ann, box) in enumerate(zip(annotations, boxes)):
        local = helper.get_future_for_agent(ann["instance_token"], sample_token, seconds=steps / 2,
                                            in_agent_frame=True)
        if local.shape[0] == 0:
            continue
        fut = convert_local_coords_to_global(local, box.center, Quaternion(matrix=box.rotation_matrix))
        n = fut.shape[0]
        trajs[i, 0] = fut[0] - box.center[:2]
        trajs[i, 1:n] = fut[1:] - fut[:-1]
        masks[i, :n] = 1
    return trajs.astype(np.float32), masks.astype(np.float32)


def _annotation_fields(nusc, helper, can_bus, sample: dict, boxes: list, ego_pose: dict, lidar_calib: dict,
                       l2e_r_mat: np.ndarray, e2g_r_mat: np.ndarray) -> dict:
    annotations = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    n = len(boxes)
    locs = np.array([b.center for b in boxes]).reshape(-1, 3)
    dims = np.array([b.wlh for b in boxes]).reshape(-1, 3)
    rots = np.array([b.orientation.yaw_pitch_roll[0] for b in boxes]).reshape(-1, 1)
    velocity = np.zeros((n, 2))
    to_lidar = np.linalg.inv(l2e_r_mat) @ np.linalg.inv(e2g_r_mat)
    for i, token in enumerate(sample["anns"]):
        velocity[i] = (to_lidar @ np.array([*nusc.box_velocity(token)[:2], 0.0]))[:2]
    fut_trajs, fut_masks = agent_futures(helper, sample["token"], annotations, boxes)
    ego_trajs, ego_masks, command = ego_future(nusc, sample, ego_pose, lidar_calib)
    return {
        "gt_boxes": np.concatenate([locs, dims[:, [1, 0, 2]], rots], axis=1),
        "gt_names": np.array([NAME_MAPPING.get(b.name, b.name) for b in boxes]),
        "gt_velocity": velocity,
        "num_lidar_pts": np.array([a["num_lidar_pts"] for a in annotations]),
        "num_radar_pts": np.array([a["num_radar_pts"] for a in annotations]),
        "valid_flag": np.array([a["num_lidar_pts"] + a["num_radar_pts"] > 0 for a in annotations], dtype=bool),
        "instance_inds": [nusc.getind("instance", a["instance_token"]) for a in annotations],
        "gt_agent_fut_trajs": fut_trajs,
        "gt_agent_fut_masks": fut_masks,
        "gt_ego_fut_trajs": ego_trajs,
        "gt_ego_fut_masks": ego_masks,
        "gt_ego_fut_cmd": command,
        "ego_status": get_ego_status(nusc, can_bus, sample),
    }


def sample_info(nusc, helper, can_bus, map_extractor: NuscMapExtractor, sample: dict, test: bool,
                max_sweeps: int) -> dict:
    """The info dict of one key frame (see the module docstring and spec section 2.3)."""
    from pyquaternion import Quaternion

    location = nusc.get("log", nusc.get("scene", sample["scene_token"])["log_token"])["location"]
    lidar_token = sample["data"]["LIDAR_TOP"]
    sd = nusc.get("sample_data", lidar_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    lidar_path, boxes, _ = nusc.get_sample_data(lidar_token)
    if not os.path.isfile(lidar_path):
        raise DataRootError("%s is missing (LIDAR_TOP of sample %s)." % (lidar_path, sample["token"]))
    info = {
        "lidar_path": lidar_path,
        "token": sample["token"],
        "sweeps": [],
        "cams": {},
        "scene_token": sample["scene_token"],
        "lidar2ego_translation": cs["translation"],
        "lidar2ego_rotation": cs["rotation"],
        "ego2global_translation": pose["translation"],
        "ego2global_rotation": pose["rotation"],
        "timestamp": sample["timestamp"],
        "map_location": location,
    }
    l2e_t, l2e_r = np.asarray(cs["translation"]), _quat_matrix(cs["rotation"])
    e2g_t, e2g_r = np.asarray(pose["translation"]), _quat_matrix(pose["rotation"])
    lidar2global = _transform(pose["translation"], pose["rotation"]) @ _transform(cs["translation"], cs["rotation"])
    geoms = map_extractor.get_map_geom(location, list(lidar2global[:3, 3]),
                                       list(Quaternion(matrix=lidar2global).q))
    info["map_annos"] = geom2anno(geoms)
    for cam in CAMERA_TYPES:
        token = sample["data"][cam]
        entry = obtain_sensor2top(nusc, token, l2e_t, l2e_r, e2g_t, e2g_r, cam)
        entry["cam_intrinsic"] = np.array(nusc.get("calibrated_sensor", nusc.get(
            "sample_data", token)["calibrated_sensor_token"])["camera_intrinsic"])
        info["cams"][cam] = entry
    prev = sd["prev"]
    while prev != "" and len(info["sweeps"]) < max_sweeps:
        info["sweeps"].append(obtain_sensor2top(nusc, prev, l2e_t, l2e_r, e2g_t, e2g_r, "lidar"))
        prev = nusc.get("sample_data", prev)["prev"]
    if not test:
        info.update(_annotation_fields(nusc, helper, can_bus, sample, boxes, pose, cs, l2e_r, e2g_r))
    return info


def _scene_tokens(nusc, names: Sequence[str]) -> Set[str]:
    by_name = {s["name"]: s["token"] for s in nusc.scene}
    return {by_name[n] for n in names if n in by_name}


def _dump(infos: List[dict], version: str, path: str) -> None:
    with open(path, "wb") as f:
        pickle.dump(dict(infos=infos, metadata=dict(version=version)), f, protocol=4)
    logger.info("wrote %s (%d infos)", path, len(infos))


def create_nuscenes_infos(root_path: str, out_path: str, can_bus_root_path: str, info_prefix: str,
                          version: str = "v1.0-trainval", max_sweeps: int = 10,
                          roi_size: Tuple[float, float] = (30, 60)) -> List[str]:
    """Convert one nuScenes version into info pkls; returns the written paths.

    Args:
        root_path: nuScenes dataroot.
        out_path: output folder (mini writes into <out_path>/mini).
        can_bus_root_path: folder containing can_bus/.
        info_prefix: file-name prefix (upstream 'nuscenes').
        version: v1.0-trainval, v1.0-test or v1.0-mini.
        max_sweeps: previous lidar sweeps kept per key frame.
        roi_size: map ROI (x extent, y extent) in metres.
    """
    from nuscenes import NuScenes
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus
    from nuscenes.prediction import PredictHelper
    from nuscenes.utils import splits
    from tqdm import tqdm

    split_names = {"v1.0-trainval": (splits.train, splits.val), "v1.0-test": (splits.test, []),
                   "v1.0-mini": (splits.mini_train, splits.mini_val)}
    if version not in split_names:
        raise ValueError("version: %s is not one of %s" % (version, ", ".join(split_names)))
    check_dataroot(root_path, version, can_bus_root_path)
    if version == "v1.0-mini":
        out_path = os.path.join(out_path, "mini")
    os.makedirs(out_path, exist_ok=True)
    nusc = NuScenes(version=version, dataroot=root_path, verbose=False)
    locations = sorted({log["location"] for log in nusc.log})
    for loc in locations:
        path = os.path.join(root_path, "maps", "expansion", loc + ".json")
        if not os.path.isfile(path):
            raise DataRootError("%s is missing (map expansion of %s)." % (path, loc))
    map_extractor = NuscMapExtractor(root_path, roi_size, locations=locations)
    can_bus = NuScenesCanBus(dataroot=can_bus_root_path)
    helper = PredictHelper(nusc)
    train_scenes = _scene_tokens(nusc, split_names[version][0])
    test = "test" in version
    train, val = [], []
    no_can_bus = set()
    for sample in tqdm(nusc.sample, desc="%s infos" % version, unit="sample", mininterval=1.0):
        info = sample_info(nusc, helper, can_bus, map_extractor, sample, test, max_sweeps)
        (train if sample["scene_token"] in train_scenes else val).append(info)
        if not test and not info["ego_status"].any():
            no_can_bus.add(nusc.get("scene", sample["scene_token"])["name"])
    if no_can_bus:
        logger.warning("%d scenes have no usable CAN bus data; their ego_status is zero (as upstream): %s",
                       len(no_can_bus), ", ".join(sorted(no_can_bus)))
    if test:
        paths = [os.path.join(out_path, "%s_infos_test.pkl" % info_prefix)]
        _dump(train, version, paths[0])
    else:
        paths = [os.path.join(out_path, "%s_infos_%s.pkl" % (info_prefix, s)) for s in ("train", "val")]
        _dump(train, version, paths[0])
        _dump(val, version, paths[1])
    return paths


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="nuScenes -> SparseDrive info pkls")
    parser.add_argument("dataset", metavar="nuscenes", choices=["nuscenes"], help="name of the dataset")
    parser.add_argument("--root-path", default="./data/nuscenes", help="nuScenes dataroot")
    parser.add_argument("--canbus", default="./data/nuscenes", help="folder that contains can_bus/")
    parser.add_argument("--version", default="v1.0",
                        help="v1.0 (trainval, then test if present), v1.0-trainval, v1.0-test or v1.0-mini")
    parser.add_argument("--max-sweeps", type=int, default=10, help="lidar sweeps per key frame")
    parser.add_argument("--out-dir", default="./data/infos/", help="output folder of the info pkls")
    parser.add_argument("--extra-tag", default="nuscenes", help="file-name prefix of the info pkls")
    parser.add_argument("--roi-size", type=float, nargs=2, default=(30.0, 60.0), metavar=("X", "Y"),
                        help="map ROI in metres (lateral, longitudinal)")
    parser.add_argument("--workers", type=int, default=4, help="unused (kept for upstream's CLI)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.version == "v1.0":
        versions = ["v1.0-trainval"]
        if os.path.isdir(os.path.join(args.root_path, "v1.0-test")):
            versions.append("v1.0-test")
        else:
            logger.warning("%s has no v1.0-test/: skipping the test infos", args.root_path)
    else:
        versions = [args.version]
    try:
        for version in versions:
            create_nuscenes_infos(args.root_path, args.out_dir, args.canbus, args.extra_tag, version=version,
                                  max_sweeps=args.max_sweeps, roi_size=tuple(args.roi_size))
    except (DataRootError, ValueError) as e:
        raise SystemExit("nuscenes_converter: %s" % e)


if __name__ == "__main__":
    main()
