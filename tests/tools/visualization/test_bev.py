"""BEV render: boxes, polylines, trajectories land at the pixels their metres map to, in their class colour."""
import numpy as np

from tests.tools.visualization.helpers import CLASSES, MAP_CLASSES, bbox_of, color_mask
from tools.visualization import style
from tools.visualization.bev import BevCanvas, render_bev
from tools.visualization.frame import FrameGT, FramePred

SIZE, RANGE, MARGIN = 660, 40.0, 36
SCALE = (SIZE - MARGIN) / (2 * RANGE)  # 7.8 px per metre


def px(x: float, y: float):
    """Expected (col, row) of LiDAR point (x, y), computed by hand from the canvas layout."""
    return MARGIN + (x + RANGE) * SCALE, (RANGE - y) * SCALE


def car_pred(x: float, y: float, score: float = 0.9) -> FramePred:
    # w = 4 m along the heading (yaw 0: along +x), l = 2 m across
    box = np.array([[x, y, -1.0, 4.0, 2.0, 1.5, 0.0, 0, 0, 0]])
    return FramePred(boxes=box, scores=np.array([score]), labels=np.array([0]), ids=np.array([7]))


def test_canvas_maps_metres_to_pixels():
    canvas = BevCanvas(SIZE, RANGE, MARGIN)
    np.testing.assert_allclose(canvas.to_px(np.array([0.0, 0.0])), px(0, 0))
    np.testing.assert_allclose(canvas.to_px(np.array([-40.0, 40.0])), [MARGIN, 0.0])
    np.testing.assert_allclose(canvas.to_px(np.array([40.0, -40.0])), [SIZE, SIZE - MARGIN])


def test_predicted_box_in_class_colour_at_its_position_only():
    image = render_bev(None, car_pred(10.0, 20.0), CLASSES, MAP_CLASSES, SIZE, RANGE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    mask = color_mask(image, style.CLASS_COLORS["car"])
    assert mask.sum() > 50, "the car's outline is drawn"
    c0, r0, c1, r1 = bbox_of(mask)
    left, top = px(8.0, 21.0)
    right, bottom = px(12.0, 19.0)
    assert abs(c0 - left) <= 2 and abs(c1 - right) <= 2, f"columns {c0}..{c1}, expected {left:.1f}..{right:.1f}"
    assert abs(r0 - top) <= 2 and abs(r1 - bottom) <= 2, f"rows {r0}..{r1}, expected {top:.1f}..{bottom:.1f}"
    col, row = px(8.0, 20.0)  # middle of the back edge
    assert mask[int(round(row)) - 1: int(round(row)) + 2, int(round(col)) - 1: int(round(col)) + 2].any()


def test_box_below_score_threshold_is_not_drawn():
    image = render_bev(None, car_pred(10.0, 20.0, score=0.1), CLASSES, MAP_CLASSES, SIZE, RANGE, score_threshold=0.3)
    assert not color_mask(image, style.CLASS_COLORS["car"]).any()


def test_map_polyline_in_its_colour_along_its_vertices():
    pred = FramePred(map_lines=np.array([[[-5.0, -10.0], [-5.0, 10.0]]]), map_scores=np.array([0.8]),
                     map_labels=np.array([1]))
    image = render_bev(None, pred, CLASSES, MAP_CLASSES, SIZE, RANGE)
    mask = color_mask(image, style.MAP_COLORS["divider"])
    c0, r0, c1, r1 = bbox_of(mask)
    col, _ = px(-5.0, 0.0)
    _, top = px(-5.0, 10.0)
    _, bottom = px(-5.0, -10.0)
    assert c0 >= col - 2 and c1 <= col + 2, "a vertical line stays in its column"
    assert abs(r0 - top) <= 2 and abs(r1 - bottom) <= 2
    assert not color_mask(image, style.MAP_COLORS["boundary"]).any(), "no other map class drawn"


def test_ground_truth_is_the_pale_class_colour_and_ego_future_follows_the_steps():
    gt = FrameGT(boxes=np.array([[-20.0, -10.0, -1.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]]), labels=np.array([8]),
                 ids=np.array([1]), ego_future=np.cumsum(np.tile([[0.0, 2.0]], (6, 1)), 0),
                 ego_future_mask=np.ones(6, dtype=bool), command=2)
    image = render_bev(gt, None, CLASSES, MAP_CLASSES, SIZE, RANGE)
    pale = color_mask(image, style.tint(style.CLASS_COLORS["pedestrian"], 0.5), tol=10)
    c0, r0, c1, r1 = bbox_of(pale)
    assert abs((c0 + c1) / 2 - px(-20.0, -10.0)[0]) <= 2 and abs((r0 + r1) / 2 - px(-20.0, -10.0)[1]) <= 2
    assert not color_mask(image, style.CLASS_COLORS["pedestrian"]).any(), "ground truth is not the full colour"
    plan = color_mask(image, style.tint(style.PLAN_COLOR, 0.5), tol=10)
    _, r0, _, _ = bbox_of(plan)
    assert abs(r0 - px(0.0, 12.0)[1]) <= 2, "the ground-truth ego future ends 12 m ahead"


def test_best_motion_mode_in_full_colour_others_faint():
    pred = car_pred(0.0, 20.0)
    straight = np.stack([np.linspace(1, 12, 12) + 0.0, np.full(12, 20.0)], -1)  # to x = 12
    back = np.stack([-np.linspace(1, 12, 12), np.full(12, 20.0)], -1)  # to x = -12
    pred.trajs = np.stack([straight, back])[None]
    pred.traj_scores = np.array([[0.2, 0.7]])
    image = render_bev(None, pred, CLASSES, MAP_CLASSES, SIZE, RANGE)
    full = color_mask(image, style.CLASS_COLORS["car"])
    c0, _, c1, _ = bbox_of(full)
    assert abs(c0 - px(-12.0, 20.0)[0]) <= 2, "the best mode (score 0.7, to x = -12) is drawn in full colour"
    assert c1 <= px(2.0, 20.0)[0] + 2, "the weaker mode is not drawn in full colour"
    faint = color_mask(image, style.tint(style.CLASS_COLORS["car"], 0.7), tol=10)
    assert faint.any() and bbox_of(faint)[2] >= px(11.0, 20.0)[0], "the weaker mode is drawn faint"
