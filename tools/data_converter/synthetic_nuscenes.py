"""Generate a small synthetic dataset in the exact nuScenes on-disk format (v1.0-mini layout).

The output loads unchanged with nuscenes-devkit's NuScenes, NuScenesCanBus, NuScenesMap and PredictHelper:
the 13 metadata tables under v1.0-mini/, key-frame JPEG images of six cameras and LIDAR_TOP .pcd.bin files,
lidar sweeps, CAN-bus pose / steering messages and map-expansion JSONs for the four nuScenes locations.
Scenes carry the ten mini scene names so the devkit's mini_train / mini_val splits and evaluators work.

Each scene is one four-way intersection (see synthetic_world.py); the ego goes left, straight or right
(cycling with the scene index), agents of all ten detection classes follow lanes, sidewalks and crosswalks.

Usage:
    python tools/data_converter/synthetic_nuscenes.py --out data/synthetic_nuscenes
    DATA_ROOT=data/synthetic_nuscenes VERSION=v1.0-mini sh test/preprocess.sh
"""
import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.data_converter import synthetic_sensors as ss  # noqa: E402
from tools.data_converter import synthetic_world as sw  # noqa: E402
from tools.data_converter.synthetic_tables import (LOCATIONS, MINI_SCENES, TokenMaker,  # noqa: E402
                                                   attribute_table, category_table, map_json, quaternion_yaw_wxyz,
                                                   visibility_table)

logger = logging.getLogger("synthetic_nuscenes")

VERSION = "v1.0-mini"
MARKER = ".synthetic_nuscenes"
BASE_TIMESTAMP = 1533151603547590
KEY_INTERVAL_US = 500000


def _pose_matrix(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = ss.rot_z(yaw)
    m[:3, 3] = (x, y, z)
    return m


def _matrix_quaternion(rot: np.ndarray) -> List[float]:
    """Rotation matrix -> nuScenes quaternion (w, x, y, z), w >= 0."""
    from pyquaternion import Quaternion

    q = Quaternion(matrix=rot, atol=1e-6).q
    return [float(v) for v in (q if q[0] >= 0 else -q)]


@dataclass
class Sizes:
    """Size knobs of one generated dataset."""

    samples: int = 16  # key frames per scene (2 Hz)
    agents: int = 16  # annotated agents per scene
    sweeps: int = 1  # lidar sweeps between consecutive key frames
    jpeg_quality: int = 90


class SceneWriter:
    """Writes one scene's tables, sensor files and CAN-bus messages into shared table lists."""

    def __init__(self, out: str, tables: Dict[str, list], tok: TokenMaker, sizes: Sizes) -> None:
        self.out, self.tables, self.tok, self.sizes = out, tables, tok, sizes
        self.cat_token = {c["name"]: c["token"] for c in tables["category"]}
        self.attr_token = {a["name"]: a["token"] for a in tables["attribute"]}
        self.sensor_token = {s["channel"]: s["token"] for s in tables["sensor"]}

    def write(self, index: int, world: sw.SceneWorld, rng: np.random.Generator) -> None:
        tok, tables = self.tok, self.tables
        name = MINI_SCENES[index]
        location = LOCATIONS[index % len(LOCATIONS)]
        t0 = BASE_TIMESTAMP + index * 100_000_000
        logfile = "n015-2018-08-%02d-12-00-00+0800" % (index + 1)
        log_token = tok("log", index)
        tables["log"].append(dict(token=log_token, logfile=logfile, vehicle="n015",
                             date_captured="2018-08-%02d" % (index + 1), location=location))
        calib = self._calibration(index, rng)
        n = self.sizes.samples
        key_times = [t0 + k * KEY_INTERVAL_US for k in range(n)]
        sample_tokens = [tok("sample", index, k) for k in range(n)]
        scene_token = tok("scene", index)
        tables["scene"].append(dict(token=scene_token, log_token=log_token, nbr_samples=n,
                               first_sample_token=sample_tokens[0], last_sample_token=sample_tokens[-1],
                               name=name, description="synthetic intersection, ego goes %s" % world.ego.maneuver))
        for k in range(n):
            tables["sample"].append(dict(token=sample_tokens[k], timestamp=key_times[k], scene_token=scene_token,
                                    prev=sample_tokens[k - 1] if k > 0 else "",
                                    next=sample_tokens[k + 1] if k + 1 < n else ""))
        ground = ss.ground_paint(world)
        hits, unoccluded = self._lidar(index, world, key_times, sample_tokens, calib, logfile, rng)
        self._cameras(index, world, key_times, sample_tokens, calib, logfile, ground)
        self._annotations(index, world, key_times, sample_tokens, hits, unoccluded, rng)
        self._can_bus(name, world, key_times)

    def _calibration(self, index: int, rng: np.random.Generator) -> Dict[str, Tuple[np.ndarray, dict]]:
        """calibrated_sensor records of this scene; returns channel -> (sensor2ego [4, 4], record)."""
        out = {}
        lidar = _pose_matrix(ss.LIDAR_TRANSLATION[0], ss.LIDAR_TRANSLATION[1], ss.LIDAR_YAW, ss.LIDAR_TRANSLATION[2])
        rig = [("LIDAR_TOP", lidar, [])]
        for channel, yaw_deg, trans, focal in ss.CAMERAS:
            m = np.eye(4)
            m[:3, :3] = ss.camera_rotation(math.radians(yaw_deg + rng.uniform(-0.5, 0.5)))
            m[:3, 3] = trans
            rig.append((channel, m, ss.intrinsic(focal).tolist()))
        for channel, m, K in rig:
            rec = dict(token=self.tok("calibrated_sensor", index, channel), sensor_token=self.sensor_token[channel],
                       translation=[float(v) for v in m[:3, 3]], rotation=_matrix_quaternion(m[:3, :3]),
                       camera_intrinsic=K)
            self.tables["calibrated_sensor"].append(rec)
            out[channel] = (m, rec)
        return out

    @staticmethod
    def _ego(world: sw.SceneWorld, utime: int, t0: int) -> np.ndarray:
        x, y, yaw = world.ego.pose((utime - t0) * 1e-6)
        return _pose_matrix(x, y, yaw)

    def _add_sample_data(self, token: str, sample_token: str, utime: int, ego: np.ndarray, calib_rec: dict,
                         filename: str, key: bool, size: Tuple[int, int], fileformat: str) -> None:
        self.tables["ego_pose"].append(dict(token=token, timestamp=utime, translation=[float(v) for v in ego[:3, 3]],
                                            rotation=_matrix_quaternion(ego[:3, :3])))
        self.tables["sample_data"].append(dict(
            token=token, sample_token=sample_token, ego_pose_token=token,
            calibrated_sensor_token=calib_rec["token"], timestamp=utime, fileformat=fileformat, is_key_frame=key,
            height=size[1], width=size[0], filename=filename, prev="", next=""))

    @staticmethod
    def _link(records: List[dict]) -> None:
        for a, b in zip(records[:-1], records[1:]):
            a["next"], b["prev"] = b["token"], a["token"]

    @staticmethod
    def _boxes_at(world: sw.SceneWorld, t: float) -> List[Tuple[np.ndarray, Tuple, float, Tuple]]:
        out = []
        for ag in world.agents:
            x, y, yaw = ag.pose(t)
            out.append((np.array([x, y, ag.size[2] / 2]), ag.size, yaw, ag.color))
        return out

    def _lidar(self, index: int, world: sw.SceneWorld, key_times: List[int], sample_tokens: List[str],
               calib: dict, logfile: str, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Key frames and sweeps of LIDAR_TOP; returns lidar hits per key frame and agent with occlusion and
        without (each box alone), both [S, A]."""
        l2e, rec = calib["LIDAR_TOP"]
        t0 = key_times[0]
        sweeps = self.sizes.sweeps
        records = []
        hits = np.zeros((len(key_times), len(world.agents)), dtype=np.int64)
        unoccluded = np.zeros_like(hits)
        for k, kt in enumerate(key_times):
            steps = [(kt, True)]
            if k + 1 < len(key_times):
                steps += [(kt + j * KEY_INTERVAL_US // (sweeps + 1), False) for j in range(1, sweeps + 1)]
            for utime, key in steps:
                ego = self._ego(world, utime, t0)
                g2l = np.linalg.inv(ego @ l2e)
                boxes = []
                for center, wlh, yaw, _ in self._boxes_at(world, (utime - t0) * 1e-6):
                    c = g2l[:3, :3] @ center + g2l[:3, 3]
                    boxes.append((c, wlh, yaw + math.atan2(g2l[1, 0], g2l[0, 0])))
                points, box_hits, box_alone = ss.lidar_scan(boxes, ss.LIDAR_TRANSLATION[2], rng,
                                                    num_azimuth=1080 if key else 360)
                folder = "samples" if key else "sweeps"
                filename = "%s/LIDAR_TOP/%s__LIDAR_TOP__%d.pcd.bin" % (folder, logfile, utime)
                points.tofile(os.path.join(self.out, filename))
                token = self.tok("sample_data", index, "LIDAR_TOP", utime)
                self._add_sample_data(token, sample_tokens[k], utime, ego, rec, filename, key, (0, 0), "pcd")
                records.append(self.tables["sample_data"][-1])
                if key:
                    hits[k], unoccluded[k] = box_hits, box_alone
        self._link(records)
        return hits, unoccluded

    def _cameras(self, index: int, world: sw.SceneWorld, key_times: List[int], sample_tokens: List[str],
                 calib: dict, logfile: str, ground: list) -> None:
        t0 = key_times[0]
        for c, (channel, *_) in enumerate(ss.CAMERAS):
            c2e, rec = calib[channel]
            K = np.array(rec["camera_intrinsic"])
            records = []
            for k, kt in enumerate(key_times):
                utime = kt + ss.CAMERA_OFFSET_US[c]
                ego = self._ego(world, utime, t0)
                boxes = self._boxes_at(world, (utime - t0) * 1e-6)
                img = ss.render_camera(ground, boxes, ego @ c2e, K, world.brightness)
                filename = "samples/%s/%s__%s__%d.jpg" % (channel, logfile, channel, utime)
                img.save(os.path.join(self.out, filename), quality=self.sizes.jpeg_quality)
                token = self.tok("sample_data", index, channel, utime)
                self._add_sample_data(token, sample_tokens[k], utime, ego, rec, filename, True, ss.IMAGE_SIZE, "jpg")
                records.append(self.tables["sample_data"][-1])
            self._link(records)

    def _annotations(self, index: int, world: sw.SceneWorld, key_times: List[int], sample_tokens: List[str],
                     hits: np.ndarray, unoccluded: np.ndarray, rng: np.random.Generator) -> None:
        """Instances and sample_annotations: each agent is annotated over the contiguous window of key frames
        in which it is within 70 m of the ego."""
        t0 = key_times[0]
        times = [(kt - t0) * 1e-6 for kt in key_times]
        for a, ag in enumerate(world.agents):
            near = [k for k, t in enumerate(times)
                    if math.dist(ag.pose(t)[:2], world.ego.pose(t)[:2]) <= 70.0]
            if not near:
                continue
            frames = range(near[0], near[-1] + 1)
            inst_token = self.tok("instance", index, a)
            records = []
            for k in frames:
                x, y, yaw = ag.pose(times[k])
                dist = math.dist((x, y), world.ego.pose(times[k])[:2])
                records.append(dict(
                    token=self.tok("sample_annotation", index, a, k), sample_token=sample_tokens[k],
                    instance_token=inst_token, visibility_token=self._visibility(hits[k, a], unoccluded[k, a]),
                    attribute_tokens=self._attributes(ag), translation=[x, y, ag.size[2] / 2],
                    size=list(ag.size), rotation=quaternion_yaw_wxyz(yaw), prev="", next="",
                    num_lidar_pts=int(hits[k, a]), num_radar_pts=self._radar(ag, dist, rng)))
            self._link(records)
            self.tables["sample_annotation"] += records
            self.tables["instance"].append(dict(
                token=inst_token, category_token=self.cat_token[ag.category], nbr_annotations=len(records),
                first_annotation_token=records[0]["token"], last_annotation_token=records[-1]["token"]))

    @staticmethod
    def _visibility(num_hits: int, num_unoccluded: int) -> str:
        """nuScenes visibility token '1'..'4' (0-40 .. 80-100 % visible): the share of the lidar rays that reach
        the box alone and still reach it among all objects."""
        ratio = num_hits / num_unoccluded if num_unoccluded else 0.0
        return str(1 + int(np.searchsorted([0.4, 0.6, 0.8], ratio, side="right")))

    def _attributes(self, ag: sw.Agent) -> List[str]:
        if ag.category.startswith("vehicle.motorcycle") or ag.category.startswith("vehicle.bicycle"):
            name = "cycle.with_rider"
        elif ag.category.startswith("vehicle."):
            name = "vehicle.moving" if ag.speed > 0.5 else "vehicle.stopped"
        elif ag.category.startswith("human."):
            name = "pedestrian.moving" if ag.speed > 0.3 else "pedestrian.standing"
        else:
            return []
        return [self.attr_token[name]]

    @staticmethod
    def _radar(ag: sw.Agent, dist: float, rng: np.random.Generator) -> int:
        if not ag.category.startswith("vehicle.") or dist > 60.0:
            return 0
        return int(rng.integers(1, 8)) if ag.speed > 0.5 else int(rng.integers(0, 3))

    def _can_bus(self, name: str, world: sw.SceneWorld, key_times: List[int]) -> None:
        """pose (50 Hz) and steeranglefeedback (100 Hz) messages from 1 s before to 1 s after the scene."""
        t0 = key_times[0]
        ego = world.ego
        pose, steer = [], []
        for utime in range(t0 - 1_000_000, key_times[-1] + 1_000_001, 10_000):
            t = (utime - t0) * 1e-6
            v = ego.speed(t)
            kappa = ego.path.curvature(ego.arc(t))
            if (utime - t0) % 20_000 == 0:
                x, y, yaw = ego.pose(t)
                pose.append(dict(utime=utime, pos=[x, y, 0.0], orientation=quaternion_yaw_wxyz(yaw),
                                 vel=[v, 0.0, 0.0], accel=[ego.accel, v * v * kappa, 9.81],
                                 rotation_rate=[0.0, 0.0, v * kappa]))
            steer.append(dict(utime=utime, value=15.0 * math.atan(2.7 * kappa)))
        for kind, msgs in (("pose", pose), ("steeranglefeedback", steer)):
            with open(os.path.join(self.out, "can_bus", "%s_%s.json" % (name, kind)), "w") as f:
                json.dump(msgs, f)


def _prepare_out(out: str) -> None:
    """Create the output folder; refuse to write into anything that is not an earlier synthetic output."""
    real = os.path.realpath(out)
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, MARKER)):
            raise SystemExit("synthetic_nuscenes: --out %s exists and is not a synthetic dataset (no %s); "
                             "choose an empty or new folder." % (out, MARKER))
        for sub in ("samples", "sweeps", VERSION, "maps", "can_bus"):
            shutil.rmtree(os.path.join(real, sub), ignore_errors=True)
    for sub in ["samples/LIDAR_TOP", "sweeps/LIDAR_TOP", VERSION, "maps/expansion", "can_bus"] + \
            ["samples/%s" % c[0] for c in ss.CAMERAS]:
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    with open(os.path.join(out, MARKER), "w") as f:
        f.write("written by tools/data_converter/synthetic_nuscenes.py\n")


def generate(out: str, scenes: int = 10, samples: int = 16, agents: int = 16, sweeps: int = 1, seed: int = 0,
             jpeg_quality: int = 90, reach: float = sw.REACH) -> None:
    """Write the synthetic dataset into `out` (see the module docstring). Deterministic for a given seed."""
    if not 1 <= scenes <= len(MINI_SCENES):
        raise ValueError("scenes: %d given, must be 1..%d (the mini scene names)" % (scenes, len(MINI_SCENES)))
    if samples < 2:
        raise ValueError("samples: %d given, need at least 2 key frames per scene" % samples)
    if reach <= 0:
        raise ValueError("reach: %g given, must be a positive distance in metres" % reach)
    sizes = Sizes(samples=samples, agents=agents, sweeps=sweeps, jpeg_quality=jpeg_quality)
    _prepare_out(out)
    tok = TokenMaker(seed)
    tables: Dict[str, list] = {name: [] for name in (
        "attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
        "sample_annotation", "sample_data", "scene", "sensor", "visibility")}
    tables["category"] = category_table(tok)
    tables["attribute"] = attribute_table(tok)
    tables["visibility"] = visibility_table()
    channels = ["LIDAR_TOP"] + [c[0] for c in ss.CAMERAS]
    tables["sensor"] = [dict(token=tok("sensor", ch), channel=ch,
                             modality="camera" if ch.startswith("CAM") else "lidar") for ch in channels]
    writer = SceneWriter(out, tables, tok, sizes)
    worlds: Dict[str, List[sw.SceneWorld]] = {loc: [] for loc in LOCATIONS}
    for i in range(scenes):
        rng = np.random.default_rng([seed, i])
        location = LOCATIONS[i % len(LOCATIONS)]
        world = sw.build_scene(i, len(worlds[location]), agents, samples, rng, reach=reach)
        worlds[location].append(world)
        writer.write(i, world, rng)
        logger.info("scene %d/%d (%s, %s, ego %s, %d agents)", i + 1, scenes, MINI_SCENES[i], location,
                    world.ego.maneuver, len(world.agents))
    for loc in LOCATIONS:
        map_token = tok("map", loc)
        logs = [lg["token"] for lg in tables["log"] if lg["location"] == loc]
        tables["map"].append(dict(token=map_token, log_tokens=logs, category="semantic_prior",
                                  filename="maps/%s.png" % map_token))
        Image.new("L", (8, 8)).save(os.path.join(out, "maps", "%s.png" % map_token))
        with open(os.path.join(out, "maps", "expansion", "%s.json" % loc), "w") as f:
            json.dump(map_json(worlds[loc], TokenMaker(seed, loc)), f)
    for name, records in tables.items():
        with open(os.path.join(out, VERSION, "%s.json" % name), "w") as f:
            json.dump(records, f)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="data/synthetic_nuscenes", help="output dataroot")
    parser.add_argument("--scenes", type=int, default=10, help="number of scenes (1..10, mini scene names)")
    parser.add_argument("--samples", type=int, default=16, help="key frames per scene (2 Hz)")
    parser.add_argument("--agents", type=int, default=16, help="annotated agents per scene")
    parser.add_argument("--reach", type=float, default=sw.REACH,
                        help="agents start at most this many metres beyond the intersection box")
    parser.add_argument("--sweeps", type=int, default=1, help="lidar sweeps between consecutive key frames")
    parser.add_argument("--seed", type=int, default=0, help="random seed (output is deterministic)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of the camera images")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    start = time.time()
    try:
        generate(args.out, scenes=args.scenes, samples=args.samples, agents=args.agents, sweeps=args.sweeps,
                 seed=args.seed, jpeg_quality=args.jpeg_quality, reach=args.reach)
    except ValueError as e:
        raise SystemExit("synthetic_nuscenes: %s" % e)
    logger.info("wrote %s (%s) in %.1f s", args.out, VERSION, time.time() - start)


if __name__ == "__main__":
    main()
