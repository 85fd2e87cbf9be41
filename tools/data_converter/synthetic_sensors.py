"""Sensors of the synthetic nuScenes world: camera rig, a painter's-algorithm camera renderer, a lidar ray caster.

Frames follow nuScenes: ego x forward / y left / z up; camera z forward / x right / y down;
lidar x right / y forward / z up. Boxes are (center [3], wlh [3], yaw) in whatever frame the caller gives.
"""
import math
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from tools.data_converter import synthetic_world as sw

IMAGE_SIZE = (1600, 900)  # (W, H), as nuScenes
# channel, yaw in the ego frame (deg), translation in the ego frame (m), focal length (px)
CAMERAS = (
    ("CAM_FRONT", 0.0, (1.70, 0.02, 1.51), 1266.0),
    ("CAM_FRONT_RIGHT", -55.0, (1.55, -0.49, 1.50), 1260.0),
    ("CAM_FRONT_LEFT", 55.0, (1.52, 0.49, 1.51), 1272.0),
    ("CAM_BACK", 180.0, (0.03, 0.00, 1.57), 809.0),
    ("CAM_BACK_LEFT", 110.0, (1.04, 0.48, 1.56), 1256.0),
    ("CAM_BACK_RIGHT", -110.0, (1.04, -0.48, 1.57), 1259.0),
)
# Camera trigger offsets relative to the lidar key frame (us): the cameras are not synchronised.
CAMERA_OFFSET_US = (12000, 20000, 4000, 37000, 29000, 45000)
LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
LIDAR_YAW = -0.5 * math.pi  # lidar x points to the ego's right
LIDAR_RANGE = 70.0
NEAR = 0.5

SKY = (150, 190, 230)
GRASS = (78, 112, 66)
WALKWAY = (150, 150, 145)
ASPHALT = (72, 72, 78)
WHITE = (225, 225, 225)
YELLOW = (225, 190, 40)


def rot_z(yaw: float) -> np.ndarray:
    """3x3 rotation about +z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_rotation(yaw: float) -> np.ndarray:
    """Camera-to-ego rotation of a level camera looking along ego yaw (rad), [3, 3]."""
    forward = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: cam x, y, z in ego
    return rot_z(yaw) @ forward


def intrinsic(focal: float) -> np.ndarray:
    """Pinhole intrinsics with the principal point near the image centre, [3, 3]."""
    return np.array([[focal, 0.0, 800.0], [0.0, focal, 480.0], [0.0, 0.0, 1.0]])


def box_corners(center: np.ndarray, wlh: Sequence[float], yaw: float) -> np.ndarray:
    """Eight corners of a box (length along yaw), [8, 3]; corners 0-3 bottom, 4-7 top, 0/1 and 4/5 front."""
    w, l, h = wlh
    x = np.array([1, 1, -1, -1]) * l / 2
    y = np.array([1, -1, -1, 1]) * w / 2
    base = np.stack([x, y], axis=1) @ rot_z(yaw)[:2, :2].T
    bottom = np.concatenate([base, np.full((4, 1), -h / 2)], axis=1)
    top = bottom + np.array([0.0, 0.0, h])
    return np.concatenate([bottom, top]) + np.asarray(center)


# faces as corner indices (outward winding) and a shading factor; the front face is brightened
_FACES = (((4, 5, 6, 7), 1.0), ((0, 1, 5, 4), 1.25), ((2, 3, 7, 6), 0.45), ((1, 2, 6, 5), 0.7),
          ((3, 0, 4, 7), 0.8), ((0, 3, 2, 1), 0.3))


def ground_paint(world: "sw.SceneWorld") -> List[Tuple[np.ndarray, Tuple[int, int, int]]]:
    """Flat ground polygons of one scene in the global frame (z = 0) with their colours, in drawing order."""
    geom = world.map_geometry()
    out = []
    big = np.array([[-400.0, -400.0], [400.0, -400.0], [400.0, 400.0], [-400.0, 400.0]])
    out.append((world.to_global(big), GRASS))
    out += [(p, WALKWAY) for p in geom["walkway"]]
    out += [(p, ASPHALT) for p, _ in geom["road_segment"]]
    for arm, a in enumerate(sw.ARM_ANGLES):
        u, n = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])

        def quad(d0: float, d1: float, l0: float, l1: float) -> np.ndarray:
            return world.to_global(np.array([d0 * u + l0 * n, d1 * u + l0 * n, d1 * u + l1 * n, d0 * u + l1 * n]))

        for lat in np.arange(-sw.HALF_ROAD + 0.25, sw.HALF_ROAD - 0.25, 1.0):
            out.append((quad(sw.CROSSING[0], sw.CROSSING[1], lat, lat + 0.5), WHITE))
        for d in np.arange(sw.CROSSING[1] + 1.0, 90.0, 6.0):
            for side in (-1, 1):
                lat = side * sw.LANE_WIDTH
                out.append((quad(d, d + 3.0, lat - 0.08, lat + 0.08), WHITE))
        end = sw.INNER + sw.ARM
        out.append((quad(sw.INNER + 0.5, end, -0.25, -0.1), YELLOW))
        out.append((quad(sw.INNER + 0.5, end, 0.1, 0.25), YELLOW))
        out.append((quad(sw.INNER, sw.INNER + 0.5, -sw.HALF_ROAD, 0.0), WHITE))  # stop line
    return [(np.concatenate([p, np.zeros((len(p), 1))], axis=1), c) for p, c in out]


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Clip a camera-frame polygon [K, 3] against the plane z = NEAR (Sutherland-Hodgman)."""
    out = []
    n = len(poly)
    for i in range(n):
        cur, nxt = poly[i], poly[(i + 1) % n]
        cin, nin = cur[2] >= NEAR, nxt[2] >= NEAR
        if cin:
            out.append(cur)
        if cin != nin:
            t = (NEAR - cur[2]) / (nxt[2] - cur[2])
            out.append(cur + t * (nxt - cur))
    return np.array(out) if out else np.zeros((0, 3))


def _project(poly_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    uvw = poly_cam @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def _draw(draw: ImageDraw.ImageDraw, poly_cam: np.ndarray, K: np.ndarray, color: Tuple[int, int, int]) -> None:
    clipped = _clip_near(poly_cam)
    if len(clipped) < 3:
        return
    uv = _project(clipped, K)
    w, h = IMAGE_SIZE
    if uv[:, 0].max() < 0 or uv[:, 0].min() > w or uv[:, 1].max() < 0 or uv[:, 1].min() > h:
        return
    draw.polygon([tuple(p) for p in uv], fill=color)


def render_camera(ground: List[Tuple[np.ndarray, Tuple[int, int, int]]],
                  boxes: List[Tuple[np.ndarray, Sequence[float], float, Tuple[int, int, int]]],
                  cam2global: np.ndarray, K: np.ndarray, brightness: float) -> Image.Image:
    """Render one RGB camera image.

    Args:
        ground: flat polygons (global frame, [K, 3]) with colours, drawn first in order.
        boxes: (center [3], wlh, yaw, colour) in the global frame.
        cam2global: camera pose, [4, 4].
        K: intrinsics, [3, 3].
        brightness: global lighting factor of the scene.
    Returns:
        A 1600x900 RGB image.
    """
    R, t = cam2global[:3, :3], cam2global[:3, 3]

    def to_cam(p: np.ndarray) -> np.ndarray:
        return (p - t) @ R

    def lit(c: Tuple[int, int, int], f: float) -> Tuple[int, int, int]:
        f *= brightness
        if f > 1.0:  # brighten towards white
            return tuple(int(min(255, v + (255 - v) * (f - 1.0))) for v in c)
        return tuple(int(v * f) for v in c)

    img = Image.new("RGB", IMAGE_SIZE, lit(SKY, 1.0))
    draw = ImageDraw.Draw(img)
    for poly, color in ground:
        _draw(draw, to_cam(poly), K, lit(color, 1.0))
    order = sorted(boxes, key=lambda b: -float(np.linalg.norm(np.asarray(b[0]) - t)))
    for center, wlh, yaw, color in order:
        corners = box_corners(center, wlh, yaw)
        cc = to_cam(corners)
        if cc[:, 2].max() < NEAR:
            continue
        box_center = corners.mean(axis=0)
        for idx, shade in _FACES:
            face = corners[list(idx)]
            normal = face.mean(axis=0) - box_center
            if np.dot(normal, t - face.mean(axis=0)) <= 0:
                continue
            _draw(draw, cc[list(idx)], K, lit(color, shade))
    return img


def lidar_scan(boxes_lidar: List[Tuple[np.ndarray, Sequence[float], float]], height: float,
               rng: np.random.Generator, num_azimuth: int = 540) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast a 32-beam lidar against the ground plane and the boxes (nearest hit wins).

    Args:
        boxes_lidar: (center [3], wlh, yaw) in the lidar frame.
        height: lidar height above the ground (m).
        rng: noise generator.
        num_azimuth: azimuth steps per revolution.
    Returns:
        points [P, 5] float32 (x, y, z, intensity, ring); hits per box [M] (occlusion aware);
        unoccluded hits per box [M] (each box alone in front of the ground).
    """
    elev = np.deg2rad(np.linspace(-30.67, 10.67, 32))
    azim = np.linspace(0.0, 2 * math.pi, num_azimuth, endpoint=False)
    e, a = np.meshgrid(elev, azim, indexing="ij")
    ring = np.broadcast_to(np.arange(32)[:, None], e.shape).ravel()
    d = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)
    with np.errstate(divide="ignore"):
        t_ground = np.where(d[:, 2] < 0, -height / d[:, 2], np.inf)
    t_best = np.minimum(t_ground, LIDAR_RANGE + 1.0)
    who = np.full(len(d), -1)
    alone = np.zeros(len(boxes_lidar), dtype=np.int64)
    ray_azim = np.tile(azim, 32)
    for k, (center, wlh, yaw) in enumerate(boxes_lidar):
        center = np.asarray(center, dtype=np.float64)
        # only rays whose azimuth falls inside the box's bounding circle can hit it
        dist, radius = math.hypot(center[0], center[1]), 0.5 * math.hypot(wlh[0], wlh[1])
        if dist > LIDAR_RANGE + radius:
            continue
        idx = np.arange(len(d))
        if dist > radius:
            gap = np.abs((ray_azim - math.atan2(center[1], center[0]) + math.pi) % (2 * math.pi) - math.pi)
            idx = np.nonzero(gap <= math.asin(radius / dist) + 1e-3)[0]
        rot = rot_z(-yaw)
        o = rot @ -center
        dd = d[idx] @ rot.T
        half = np.array([wlh[1], wlh[0], wlh[2]]) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / dd, (half - o) / dd
        t_near = np.nanmax(np.minimum(t1, t2), axis=1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (t_near <= t_far) & (t_near > 0) & (t_near < np.minimum(t_ground[idx], LIDAR_RANGE))
        alone[k] = int(hit.sum())
        closer = hit & (t_near < t_best[idx])
        t_best[idx[closer]] = t_near[closer]
        who[idx[closer]] = k
    keep = t_best <= LIDAR_RANGE
    pts = d[keep] * t_best[keep, None] + rng.normal(0.0, 0.02, size=(int(keep.sum()), 3))
    on_box = who[keep] >= 0
    intensity = np.where(on_box, rng.uniform(30, 100, size=len(pts)), rng.uniform(2, 20, size=len(pts)))
    points = np.concatenate([pts, intensity[:, None], ring[keep, None]], axis=1).astype(np.float32)
    hits = np.bincount(who[keep][on_box], minlength=len(boxes_lidar))
    return points, hits, alone
