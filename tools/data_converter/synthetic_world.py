"""Geometry of the synthetic nuScenes world: one four-way intersection per scene, routes, ego and agents.

Everything here is plain numpy in the global (map) frame, metres and radians. The intersection is
built in a local frame (centre at the origin, arms along +-x and +-y) and placed into the map with a
per-scene rotation and offset. Traffic drives on the right; each road has two lanes per direction.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

LANE_WIDTH = 3.5
HALF_ROAD = 2 * LANE_WIDTH  # two lanes per direction
INNER = 14.0  # half size of the intersection box; arms start here
ARM = 150.0  # arm length beyond the intersection box
CROSSING = (15.0, 19.0)  # crosswalk strip, distance from the centre along each arm
SIDEWALK = 3.0  # sidewalk width beside each arm
ARM_ANGLES = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)  # E, N, W, S (direction pointing away)

# nuScenes category -> (width, length, height) in metres, speed range in m/s.
CLASS_SIZE = {
    "vehicle.car": (1.9, 4.6, 1.7),
    "vehicle.truck": (2.5, 7.0, 2.9),
    "vehicle.bus.rigid": (2.9, 11.0, 3.4),
    "vehicle.trailer": (2.9, 11.5, 3.8),
    "vehicle.construction": (2.8, 6.4, 3.2),
    "vehicle.motorcycle": (0.8, 2.1, 1.5),
    "vehicle.bicycle": (0.6, 1.7, 1.3),
    "human.pedestrian.adult": (0.7, 0.7, 1.75),
    "movable_object.barrier": (2.4, 0.5, 1.0),
    "movable_object.trafficcone": (0.4, 0.4, 0.9),
    "movable_object.pushable_pullable": (0.6, 0.8, 1.0),
}
CLASS_SPEED = {
    "vehicle.car": (5.0, 11.0),
    "vehicle.truck": (4.0, 9.0),
    "vehicle.bus.rigid": (4.0, 8.0),
    "vehicle.trailer": (4.0, 8.0),
    "vehicle.construction": (2.0, 5.0),
    "vehicle.motorcycle": (6.0, 12.0),
    "vehicle.bicycle": (3.0, 6.0),
    "human.pedestrian.adult": (1.0, 1.6),
}
VEHICLES = ("vehicle.car", "vehicle.truck", "vehicle.bus.rigid", "vehicle.trailer", "vehicle.construction",
            "vehicle.motorcycle", "vehicle.bicycle")
STATIC = ("movable_object.barrier", "movable_object.trafficcone", "movable_object.pushable_pullable")
# First the ten detection classes once each, then a mix weighted towards cars and pedestrians.
AGENT_CYCLE = ("vehicle.car", "human.pedestrian.adult", "vehicle.truck", "movable_object.barrier",
               "movable_object.trafficcone", "vehicle.bus.rigid", "vehicle.bicycle", "vehicle.motorcycle",
               "vehicle.trailer", "vehicle.construction", "vehicle.car", "human.pedestrian.adult",
               "movable_object.pushable_pullable", "vehicle.car", "human.pedestrian.adult",
               "movable_object.trafficcone")
MANEUVERS = ("left", "straight", "right")
REACH = 70.0  # agents start at most this many metres beyond the intersection box (the default world)


class Path:
    """Polyline parametrised by arc length; poses beyond either end continue along the end headings.

    Args:
        points: vertices in order of travel, [K, 2] metres (K >= 2, no zero-length segments).
    """

    def __init__(self, points: np.ndarray) -> None:
        points = np.asarray(points, dtype=np.float64)
        seg = np.diff(points, axis=0)
        keep = np.concatenate([[True], np.linalg.norm(seg, axis=1) > 1e-9])
        self.points = points[keep]
        seg = np.diff(self.points, axis=0)
        self.seg_len = np.linalg.norm(seg, axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.seg_dir = seg / self.seg_len[:, None]
        self.length = float(self.cum[-1])

    def pose(self, s: float) -> Tuple[float, float, float]:
        """Return (x, y, yaw) at arc length s."""
        i = int(np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.seg_len) - 1))
        d = self.seg_dir[i]
        xy = self.points[i] + d * (s - self.cum[i])
        return float(xy[0]), float(xy[1]), math.atan2(d[1], d[0])

    def curvature(self, s: float, ds: float = 0.5) -> float:
        """Signed curvature (1/m, positive = left) by finite differences of the heading."""
        yaw0, yaw1 = self.pose(s - ds)[2], self.pose(s + ds)[2]
        return wrap_angle(yaw1 - yaw0) / (2 * ds)


def wrap_angle(a: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def _unit(a: float) -> np.ndarray:
    return np.array([math.cos(a), math.sin(a)])


def _right(heading: float) -> np.ndarray:
    return np.array([math.sin(heading), -math.cos(heading)])


def _bezier(p0: np.ndarray, d0: np.ndarray, p1: np.ndarray, d1: np.ndarray, n: int = 24) -> np.ndarray:
    """Cubic Bezier from p0 (direction d0) to p1 (direction d1); near-circular for quarter turns."""
    c = 0.5523 * np.linalg.norm(p1 - p0) / math.sqrt(2.0)
    t = np.linspace(0.0, 1.0, n)[:, None]
    q0, q1, q2, q3 = p0, p0 + c * d0, p1 - c * d1, p1
    return (1 - t) ** 3 * q0 + 3 * (1 - t) ** 2 * t * q1 + 3 * (1 - t) * t ** 2 * q2 + t ** 3 * q3


def lane_center(arm: int, lane: int, incoming: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end point of a lane centre line in the local frame, in the driving direction.

    Args:
        arm: arm index into ARM_ANGLES.
        lane: 0 inner (next to the road divider), 1 outer.
        incoming: True for the lane driving towards the intersection.
    """
    a = ARM_ANGLES[arm]
    heading = a + math.pi if incoming else a
    offset = (lane + 0.5) * LANE_WIDTH * _right(heading)
    near, far = INNER * _unit(a) + offset, (INNER + ARM) * _unit(a) + offset
    return (far, near) if incoming else (near, far)


def route_points(arm_in: int, maneuver: str) -> np.ndarray:
    """Local-frame polyline from the far end of an incoming lane through the intersection to the far end of
    the exit lane. Left turns use the inner lanes, right turns the outer lanes, straight either (inner)."""
    arm_out = (arm_in + {"left": -1, "straight": 2, "right": 1}[maneuver]) % 4
    lane = 1 if maneuver == "right" else 0
    a0, p0 = lane_center(arm_in, lane, incoming=True)
    p1, a1 = lane_center(arm_out, lane, incoming=False)
    d0 = _unit(ARM_ANGLES[arm_in] + math.pi)
    d1 = _unit(ARM_ANGLES[arm_out])
    middle = _bezier(p0, d0, p1, d1)
    return np.vstack([a0[None], middle, a1[None]])


@dataclass
class Agent:
    """One annotated object: category, size (w, l, h) and a path followed at constant speed."""

    category: str
    size: Tuple[float, float, float]
    path: Path
    s0: float
    speed: float
    color: Tuple[int, int, int]

    def pose(self, t: float) -> Tuple[float, float, float]:
        """Global (x, y, yaw) at time t seconds after the scene start."""
        return self.path.pose(self.s0 + self.speed * t)


@dataclass
class Ego:
    """Ego vehicle on a route with speed v0 + accel * t (m/s)."""

    path: Path
    s0: float
    v0: float
    accel: float
    maneuver: str

    def arc(self, t: float) -> float:
        return self.s0 + self.v0 * t + 0.5 * self.accel * t * t

    def speed(self, t: float) -> float:
        return self.v0 + self.accel * t

    def pose(self, t: float) -> Tuple[float, float, float]:
        return self.path.pose(self.arc(t))


def place(pts: np.ndarray, center: np.ndarray, rotation: float) -> np.ndarray:
    """Rotate local points [K, 2] by rotation (rad) and move them to center (global frame)."""
    c, s = math.cos(rotation), math.sin(rotation)
    return np.asarray(pts, dtype=np.float64) @ np.array([[c, -s], [s, c]]).T + center


@dataclass
class SceneWorld:
    """Map geometry (global frame) plus ego and agents of one scene."""

    center: np.ndarray
    rotation: float
    ego: Ego
    agents: List[Agent] = field(default_factory=list)
    brightness: float = 1.0  # lighting factor of the rendered images

    def to_global(self, pts: np.ndarray) -> np.ndarray:
        """Local intersection frame -> global map frame, [K, 2]."""
        return place(pts, self.center, self.rotation)

    def map_geometry(self) -> Dict[str, list]:
        """Global-frame map elements: polygons [K, 2] and polylines [K, 2] by nuScenes layer name.

        Returns keys: road_segment (list of (polygon, is_intersection)), lane, ped_crossing,
        lane_divider, road_divider, walkway.
        """
        g = self.to_global
        out: Dict[str, list] = {k: [] for k in ("road_segment", "lane", "ped_crossing", "lane_divider",
                                                "road_divider", "walkway")}
        box = np.array([[-INNER, -INNER], [INNER, -INNER], [INNER, INNER], [-INNER, INNER]])
        out["road_segment"].append((g(box), True))
        for arm, a in enumerate(ARM_ANGLES):
            u, n = _unit(a), _unit(a + 0.5 * math.pi)

            def quad(d0: float, d1: float, l0: float, l1: float) -> np.ndarray:
                return g(np.array([d0 * u + l0 * n, d1 * u + l0 * n, d1 * u + l1 * n, d0 * u + l1 * n]))

            # Arms overlap the intersection box and lanes sit strictly inside their arm, so the unions taken
            # by the map extractor are clean polygons without float slivers along shared edges.
            out["road_segment"].append((quad(INNER - 0.1, INNER + ARM, -HALF_ROAD, HALF_ROAD), False))
            for k in range(4):
                l0 = -HALF_ROAD + k * LANE_WIDTH + (0.01 if k == 0 else 0.0)
                l1 = -HALF_ROAD + (k + 1) * LANE_WIDTH - (0.01 if k == 3 else 0.0)
                out["lane"].append(quad(INNER + 0.01, INNER + ARM - 0.01, l0, l1))
            out["ped_crossing"].append(quad(CROSSING[0], CROSSING[1], -HALF_ROAD, HALF_ROAD))
            for side in (-1, 1):
                out["walkway"].append(quad(INNER, INNER + ARM, side * HALF_ROAD, side * (HALF_ROAD + SIDEWALK)))
                line = np.array([(INNER + 0.5) * u + side * LANE_WIDTH * n, (INNER + ARM) * u + side * LANE_WIDTH * n])
                out["lane_divider"].append(g(line))
            out["road_divider"].append(g(np.array([(INNER + 0.5) * u, (INNER + ARM) * u])))
        return out

    def lane_records(self) -> List[Tuple[np.ndarray, np.ndarray, float]]:
        """Global (start, end, heading) of each lane centre line, in map_geometry's lane order."""
        out = []
        for arm, a in enumerate(ARM_ANGLES):
            n = _unit(a + 0.5 * math.pi)
            for k in range(4):
                lateral = -HALF_ROAD + (k + 0.5) * LANE_WIDTH
                outgoing = lateral < 0  # right of the outward direction
                p_near = INNER * _unit(a) + lateral * n
                p_far = (INNER + ARM) * _unit(a) + lateral * n
                start, end = (p_near, p_far) if outgoing else (p_far, p_near)
                start, end = self.to_global(np.stack([start, end]))
                heading = math.atan2(end[1] - start[1], end[0] - start[0])
                out.append((start, end, heading))
        return out


def _pedestrian_path(arm: int, side: int, rng: np.random.Generator, reach: float) -> np.ndarray:
    """Local polyline along one sidewalk, across the arm's crosswalk, and back along the other sidewalk."""
    a = ARM_ANGLES[arm]
    u, n = _unit(a), _unit(a + 0.5 * math.pi)
    mid = 0.5 * sum(CROSSING)
    walk = HALF_ROAD + 0.5 * SIDEWALK
    far = mid + rng.uniform(15.0, 40.0) * min(1.0, reach / REACH)
    pts = np.array([far * u - side * walk * n, mid * u - side * walk * n,
                    mid * u + side * walk * n, far * u + side * walk * n])
    return pts


def _class_color(category: str, rng: np.random.Generator) -> Tuple[int, int, int]:
    base = {
        "vehicle.car": (190, 40, 40), "vehicle.truck": (40, 70, 190), "vehicle.bus.rigid": (230, 200, 40),
        "vehicle.trailer": (130, 60, 160), "vehicle.construction": (200, 130, 30),
        "vehicle.motorcycle": (40, 190, 200), "vehicle.bicycle": (50, 170, 60),
        "human.pedestrian.adult": (230, 90, 180), "movable_object.barrier": (235, 235, 235),
        "movable_object.trafficcone": (255, 110, 0), "movable_object.pushable_pullable": (120, 90, 60),
    }[category]
    jitter = rng.integers(-20, 21, size=3)
    return tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(base, jitter))


def _min_gap(a: Agent, others: Sequence, times: np.ndarray) -> float:
    """Smallest centre distance minus both half-lengths between agent a and each of others over times."""
    gap = np.inf
    for o in others:
        for t in times:
            pa, po = np.array(a.pose(t)[:2]), np.array(o.pose(t)[:2])
            reach = 0.5 * a.size[1] + (0.5 * o.size[1] if isinstance(o, Agent) else 2.5)
            gap = min(gap, float(np.linalg.norm(pa - po)) - reach)
    return gap


def _sample_agent(category: str, world: SceneWorld, rng: np.random.Generator, reach: float) -> Agent:
    size = CLASS_SIZE[category]
    color = _class_color(category, rng)
    if category in VEHICLES:
        path = Path(world.to_global(route_points(int(rng.integers(4)), MANEUVERS[int(rng.integers(3))])))
        s0 = rng.uniform(ARM - reach, ARM - 5.0)  # within reach of the intersection
        lo, hi = CLASS_SPEED[category]
        speed = 0.0 if rng.random() < 0.15 else rng.uniform(lo, hi)
        return Agent(category, size, path, s0, speed, color)
    if category == "human.pedestrian.adult":
        pts = _pedestrian_path(int(rng.integers(4)), int(rng.choice([-1, 1])), rng, reach)
        path = Path(world.to_global(pts))
        speed = 0.0 if rng.random() < 0.15 else rng.uniform(*CLASS_SPEED[category])
        return Agent(category, size, path, rng.uniform(0.0, path.length * 0.6), speed, color)
    arm = int(rng.integers(4))
    a = ARM_ANGLES[arm]
    side = float(rng.choice([-1.0, 1.0]))
    d = rng.uniform(CROSSING[1] + 3.0, max(reach, CROSSING[1] + 3.0))
    lateral = side * (HALF_ROAD + rng.uniform(0.5, SIDEWALK - 0.5))
    p = d * _unit(a) + lateral * _unit(a + 0.5 * math.pi)
    # A static object is a degenerate path: a short segment along the arm, speed 0.
    pts = world.to_global(np.stack([p, p + _unit(a)]))
    return Agent(category, size, Path(pts), 0.0, 0.0, color)


def build_scene(index: int, location_slot: int, num_agents: int, num_samples: int,
                rng: np.random.Generator, reach: float = REACH) -> SceneWorld:
    """Build one scene: intersection placed at its slot in the location map, an ego route and agents.

    Args:
        index: scene index; the ego maneuver cycles left, straight, right with it.
        location_slot: position of this intersection inside its location's map.
        num_agents: number of annotated agents (classes follow AGENT_CYCLE).
        num_samples: key frames in the scene (2 Hz).
        rng: the scene's random generator.
        reach: agents start at most this many metres beyond the intersection box (a smaller reach keeps them
            in the ego's evaluation ranges: the learning check's clip).
    """
    center = np.array([500.0 + 600.0 * location_slot, 500.0])
    rotation = rng.uniform(-math.pi, math.pi)
    maneuver = MANEUVERS[index % 3]
    path = Path(place(route_points(int(rng.integers(4)), maneuver), center, rotation))
    duration = 0.5 * (num_samples - 1)
    v0 = rng.uniform(4.5, 6.0) if maneuver != "straight" else rng.uniform(6.0, 9.0)
    accel = rng.uniform(-0.3, 0.3)
    # Reach the intersection entry (arc length ARM) around 30-45 % of the scene.
    t_entry = duration * rng.uniform(0.3, 0.45)
    s0 = ARM - (v0 * t_entry + 0.5 * accel * t_entry ** 2)
    world = SceneWorld(center=center, rotation=rotation, ego=Ego(path=path, s0=s0, v0=v0, accel=accel,
                                                                 maneuver=maneuver))

    times = np.arange(num_samples) * 0.5
    for i in range(num_agents):
        category = AGENT_CYCLE[i % len(AGENT_CYCLE)]
        best: Optional[Agent] = None
        for _ in range(40):
            cand = _sample_agent(category, world, rng, reach)
            if _min_gap(cand, [world.ego] + world.agents, times) > 1.5:
                best = cand
                break
        if best is not None:
            world.agents.append(best)
    world.brightness = float(rng.uniform(0.85, 1.1))
    return world
