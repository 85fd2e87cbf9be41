"""Camera render: a box in front of a hand-made camera lands at the hand-projected pixels, in its colour."""
import cv2
import numpy as np
import pytest

from tests.tools.visualization.helpers import CLASSES, MAP_CLASSES, bbox_of, color_mask
from tools.visualization import style
from tools.visualization.camera import render_cameras
from tools.visualization.frame import FrameGT, FramePred

IMG_W, IMG_H, FOCAL = 1600, 900, 800.0
TILE = (352, 198)  # 0.22 of the image


def front_camera() -> np.ndarray:
    """lidar2img of a camera at the LiDAR origin looking along +y (x right, image y down = -z)."""
    lidar2cam = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])
    intrinsic = np.eye(4)
    intrinsic[:3, :3] = [[FOCAL, 0, IMG_W / 2], [0, FOCAL, IMG_H / 2], [0, 0, 1]]
    return intrinsic @ lidar2cam


@pytest.fixture
def frame(tmp_path) -> FrameGT:
    path = str(tmp_path / "front.png")
    cv2.imwrite(path, np.full((IMG_H, IMG_W, 3), 128, dtype=np.uint8))
    return FrameGT(cameras={"CAM_FRONT": (path, front_camera())})


def tile_px(x: float, y: float, z: float):
    """Hand projection into the resized tile: u = f x / y + cx, v = -f z / y + cy, times 0.22."""
    s = TILE[0] / IMG_W
    return (FOCAL * x / y + IMG_W / 2) * s, (-FOCAL * z / y + IMG_H / 2) * s


def car_at(x: float, y: float) -> FramePred:
    box = np.array([[x, y, 0.0, 4.0, 2.0, 2.0, 0.0, 0, 0, 0]])  # 4 m along x, 2 m along y, 2 m tall
    return FramePred(boxes=box, scores=np.array([0.9]), labels=np.array([0]))


def test_box_projects_to_hand_computed_pixels_in_the_front_tile(frame):
    image = render_cameras(frame, car_at(0.0, 20.0), CLASSES, MAP_CLASSES, TILE)
    assert image.shape == (2 * TILE[1], 3 * TILE[0], 3)
    mask = color_mask(image, style.CLASS_COLORS["car"])
    c0, r0, c1, r1 = bbox_of(mask)
    # the near face (y = 19) is the largest: x in [-2, 2], z in [-1, 1]
    left, top = tile_px(-2.0, 19.0, 1.0)
    right, bottom = tile_px(2.0, 19.0, -1.0)
    offset = TILE[0]  # CAM_FRONT is the middle tile of the top row
    assert abs(c0 - (left + offset)) <= 2 and abs(c1 - (right + offset)) <= 2, (c0, c1, left + offset, right + offset)
    assert abs(r0 - top) <= 2 and abs(r1 - bottom) <= 2, (r0, r1, top, bottom)


def test_box_behind_the_camera_is_not_drawn(frame):
    image = render_cameras(frame, car_at(0.0, -20.0), CLASSES, MAP_CLASSES, TILE)
    assert not color_mask(image, style.CLASS_COLORS["car"]).any()


def test_map_line_drawn_on_the_ground_plane(frame):
    pred = FramePred(map_lines=np.array([[[3.0, 10.0], [3.0, 30.0]]]), map_scores=np.array([0.9]),
                     map_labels=np.array([2]))
    image = render_cameras(frame, pred, CLASSES, MAP_CLASSES, TILE)
    mask = color_mask(image, style.MAP_COLORS["boundary"])
    c0, r0, c1, r1 = bbox_of(mask)
    near = tile_px(3.0, 10.0, style.GROUND_HEIGHT)
    far = tile_px(3.0, 30.0, style.GROUND_HEIGHT)
    assert abs(r1 - near[1]) <= 2 and abs(r0 - far[1]) <= 2, (r0, r1, far, near)
    assert abs(c1 - (near[0] + TILE[0])) <= 2 and abs(c0 - (far[0] + TILE[0])) <= 2


def test_ground_truth_boxes_only_on_request(frame):
    gt = FrameGT(cameras=frame.cameras, boxes=np.array([[0.0, 20.0, 0.0, 4.0, 2.0, 2.0, 0.0, 0, 0]]),
                 labels=np.array([0]), ids=np.array([1]))
    pale = style.tint(style.CLASS_COLORS["car"], 0.5)
    assert not color_mask(render_cameras(gt, None, CLASSES, MAP_CLASSES, TILE), pale).any()
    assert color_mask(render_cameras(gt, None, CLASSES, MAP_CLASSES, TILE, gt_boxes=True), pale).any()
