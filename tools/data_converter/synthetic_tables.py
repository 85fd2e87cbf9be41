"""Fixed nuScenes vocabulary (categories, attributes, visibility), tokens, and the map-expansion JSON writer
for the synthetic dataset."""
import hashlib
import math
from typing import Dict, List

import numpy as np

# The ten mini scene names, interleaving mini_train and mini_val so any prefix holds both splits.
MINI_SCENES = ("scene-0061", "scene-0103", "scene-0553", "scene-0916", "scene-0655", "scene-0757",
               "scene-0796", "scene-1077", "scene-1094", "scene-1100")
LOCATIONS = ("singapore-onenorth", "boston-seaport", "singapore-queenstown", "singapore-hollandvillage")

# nuScenes object categories with their lidarseg index.
CATEGORIES = (
    ("animal", 1), ("human.pedestrian.adult", 2), ("human.pedestrian.child", 3),
    ("human.pedestrian.construction_worker", 4), ("human.pedestrian.personal_mobility", 5),
    ("human.pedestrian.police_officer", 6), ("human.pedestrian.stroller", 7), ("human.pedestrian.wheelchair", 8),
    ("movable_object.barrier", 9), ("movable_object.debris", 10), ("movable_object.pushable_pullable", 11),
    ("movable_object.trafficcone", 12), ("static_object.bicycle_rack", 13), ("vehicle.bicycle", 14),
    ("vehicle.bus.bendy", 15), ("vehicle.bus.rigid", 16), ("vehicle.car", 17), ("vehicle.construction", 18),
    ("vehicle.emergency.ambulance", 19), ("vehicle.emergency.police", 20), ("vehicle.motorcycle", 21),
    ("vehicle.trailer", 22), ("vehicle.truck", 23),
)
ATTRIBUTES = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving")
VISIBILITY = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))


class TokenMaker:
    """Deterministic 32-hex tokens: md5 of the seed, a namespace and the record's key parts."""

    def __init__(self, seed: int, namespace: str = "") -> None:
        self.prefix = "%d/%s/" % (seed, namespace)

    def __call__(self, *key: object) -> str:
        return hashlib.md5((self.prefix + "/".join(str(k) for k in key)).encode()).hexdigest()


def quaternion_yaw_wxyz(yaw: float) -> List[float]:
    """Quaternion (w, x, y, z) of a rotation by yaw about +z."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def category_table(tok: TokenMaker) -> List[dict]:
    return [dict(token=tok("category", name), name=name, description=name, index=index)
            for name, index in CATEGORIES]


def attribute_table(tok: TokenMaker) -> List[dict]:
    return [dict(token=tok("attribute", name), name=name, description=name) for name in ATTRIBUTES]


def visibility_table() -> List[dict]:
    return [dict(token=token, level=level, description="visibility of an instance is %s" % level)
            for token, level in VISIBILITY]


class _MapBuilder:
    """Accumulates nodes, lines and polygons of one map-expansion file."""

    def __init__(self, tok: TokenMaker) -> None:
        self.tok = tok
        self.layers: Dict[str, list] = {name: [] for name in (
            "polygon", "line", "node", "drivable_area", "road_segment", "road_block", "lane", "ped_crossing",
            "walkway", "stop_line", "carpark_area", "road_divider", "lane_divider", "traffic_light",
            "lane_connector")}
        self.count = 0

    def _token(self) -> str:
        self.count += 1
        return self.tok("map", self.count)

    def _nodes(self, pts: np.ndarray) -> List[str]:
        tokens = []
        for x, y in np.asarray(pts):
            tokens.append(self._token())
            self.layers["node"].append(dict(token=tokens[-1], x=float(x), y=float(y)))
        return tokens

    def polygon(self, pts: np.ndarray) -> str:
        token = self._token()
        self.layers["polygon"].append(dict(token=token, exterior_node_tokens=self._nodes(pts), holes=[]))
        return token

    def line(self, pts: np.ndarray) -> str:
        token = self._token()
        self.layers["line"].append(dict(token=token, node_tokens=self._nodes(pts)))
        return token

    def add(self, layer: str, **fields: object) -> str:
        token = self._token()
        self.layers[layer].append(dict(token=token, **fields))
        return token


def map_json(worlds: list, tok: TokenMaker) -> dict:
    """Map-expansion JSON (version 1.3 schema read by NuScenesMap) for all scenes of one location.

    Args:
        worlds: SceneWorld objects placed in this location (may be empty).
        tok: token maker unique to this location.
    """
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    b = _MapBuilder(tok)
    arclines: Dict[str, list] = {}
    connectivity: Dict[str, dict] = {}
    for world in worlds:
        geom = world.map_geometry()
        area = unary_union([Polygon(p) for p, _ in geom["road_segment"]])
        da_token = b.add("drivable_area", polygon_tokens=[b.polygon(np.array(area.exterior.coords)[:-1])])
        seg_tokens = [b.add("road_segment", polygon_token=b.polygon(p), is_intersection=inter,
                            drivable_area_token=da_token) for p, inter in geom["road_segment"]]
        for poly, (start, end, heading) in zip(geom["lane"], world.lane_records()):
            normal = np.array([-math.sin(heading), math.cos(heading)]) * 1.75
            token = b.add("lane", polygon_token=b.polygon(poly), lane_type="CAR",
                          from_edge_line_token=b.line(np.stack([start - normal, start + normal])),
                          to_edge_line_token=b.line(np.stack([end - normal, end + normal])),
                          left_lane_divider_segments=[], right_lane_divider_segments=[])
            length = float(np.linalg.norm(end - start))
            arclines[token] = [dict(start_pose=[float(start[0]), float(start[1]), heading],
                                    end_pose=[float(end[0]), float(end[1]), heading], shape="LSR",
                                    radius=999.999, segment_length=[0.0, length, 0.0])]
            connectivity[token] = dict(incoming=[], outgoing=[])
        for arm, poly in enumerate(geom["ped_crossing"]):
            b.add("ped_crossing", polygon_token=b.polygon(poly), road_segment_token=seg_tokens[1 + arm])
        for poly in geom["walkway"]:
            b.add("walkway", polygon_token=b.polygon(poly))
        for arm, line in enumerate(geom["road_divider"]):
            b.add("road_divider", line_token=b.line(line), road_segment_token=seg_tokens[1 + arm])
        for line in geom["lane_divider"]:
            b.add("lane_divider", line_token=b.line(line), lane_divider_segments=[])
    extent = max([1000.0] + [float(w.center.max()) + 500.0 for w in worlds])
    return dict(version="1.3", canvas_edge=[extent, extent], arcline_path_3=arclines,
                connectivity=connectivity, **b.layers)
