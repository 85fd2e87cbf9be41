"""Planning metrics: L2, ego-box collisions with future GT boxes, cumulative (VAD) averaging."""
import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.evaluation.planning.planning_eval import (bev_corners, collisions,
                                                                               evaluate_planning,
                                                                               future_boxes,
                                                                               rectangles_intersect,
                                                                               trajectory_yaw)
from tests.datasets.evaluation._builders import make_info, yaw_quat

STRAIGHT = np.stack([np.zeros(6), np.arange(1, 7, dtype=float)], axis=1)  # 1 m per step along +y


def unit_box(x, y, yaw=0.0):
    return np.array([[x, y, 0.0, 1.0, 1.0, 1.5, yaw]])


def test_trajectory_yaw():
    assert np.allclose(trajectory_yaw(STRAIGHT), np.pi / 2), "driving along +y gives heading pi/2"
    assert np.allclose(trajectory_yaw(STRAIGHT[:, ::-1]), 0.0), "driving along +x gives heading 0"
    assert np.allclose(trajectory_yaw(STRAIGHT * 0.05), np.pi / 2), "under 0.5 m in total counts as static"
    turn = np.array([[0, 1], [1, 1], [2, 1], [3, 1], [4, 1], [5, 1]], float)
    yaw = trajectory_yaw(turn)
    assert yaw[0] == pytest.approx(np.pi / 4), f"step 0 uses point 1 minus the origin: {yaw}"
    assert np.allclose(yaw[1:], 0.0), f"then straight along +x: {yaw}"


def test_collision_uses_forward_offset_and_ego_size():
    # step 0: ego centre (0, 1.5) after the 0.5 m shift, extends 2.042 m ahead -> y up to 3.542
    assert collisions(STRAIGHT, [unit_box(0, 3.9)] + [np.zeros((0, 7))] * 5).tolist() == [1, 0, 0, 0, 0, 0], \
        "a box starting at y=3.4 is hit only thanks to the 0.5 m forward shift"
    assert not collisions(STRAIGHT, [unit_box(0, 4.1)] + [np.zeros((0, 7))] * 5).any(), "y from 3.6 is clear"
    lateral = [unit_box(1.4, 1.0)] + [np.zeros((0, 7))] * 5
    assert collisions(STRAIGHT, lateral)[0], "x from 0.9 overlaps the 1.85 m wide ego (half width 0.925)"
    assert not collisions(STRAIGHT, [unit_box(1.45, 1.0)] + [np.zeros((0, 7))] * 5)[0], "x from 0.95 is clear"


def test_rectangle_test_matches_shapely():
    geometry = pytest.importorskip("shapely.geometry")
    rng = np.random.default_rng(0)
    centers = rng.uniform(-4, 4, size=(200, 2))
    others = bev_corners(centers, rng.uniform(0.5, 5, 200), rng.uniform(0.5, 3, 200), rng.uniform(-3, 3, 200))
    ego = bev_corners(np.zeros((1, 2)), np.array([4.084]), np.array([1.85]), np.array([0.3]))[0]
    got = rectangles_intersect(ego, others)
    want = [geometry.Polygon(ego).intersects(geometry.Polygon(o)) for o in others]
    assert got.tolist() == want, "separating-axis test disagrees with shapely"
    assert 20 < got.sum() < 180, "the random case should mix hits and misses"


def drive_scene(obstacle_global=(3.0, 6.0), obstacle_pts=5):
    """Seven frames, the ego moving 2 m per frame along +y; an obstacle only in frame 3."""
    infos = []
    for i in range(7):
        boxes = unit_box(obstacle_global[0], obstacle_global[1] - 2 * i) if i == 3 else None
        infos.append(make_info(f"f{i}", boxes=boxes, names=["car"] if i == 3 else [],
                               lidar_pts=[obstacle_pts] if i == 3 else None, ego_translation=(0, 2 * i, 0),
                               ego_fut_trajs=np.tile([0.0, 2.0], (6, 1)),
                               ego_fut_masks=(np.arange(6) < 6 - i).astype(np.float32), timestamp=i))
    return infos


def plan(offset_fn):
    gt = np.cumsum(np.tile([0.0, 2.0], (6, 1)), axis=0)
    return [dict(final_planning=gt + offset_fn(np.arange(6))[:, None] * np.array([1.0, 0.0]))] + \
        [dict(final_planning=np.zeros((6, 2)))] * 6


def test_perfect_plan_and_constant_offset():
    infos = drive_scene(obstacle_global=(30, 6))
    m = evaluate_planning(plan(lambda t: 0 * t), infos)
    assert m["L2"] == 0.0 and m["obj_box_col"] == 0.0 and m["obj_col"] == 0.0, f"perfect plan: {m}"
    m = evaluate_planning(plan(lambda t: 1 + 0 * t), infos)
    assert m["L2"] == pytest.approx(1.0) and m["L2_3.0s_per_step"] == pytest.approx(1.0), f"1 m off: {m}"


def test_growing_error_cumulative_vs_per_step():
    m = evaluate_planning(plan(lambda t: 0.1 * (t + 1)), drive_scene(obstacle_global=(30, 6)))
    assert m["L2_1.0s"] == pytest.approx(0.15) and m["L2_3.0s"] == pytest.approx(0.35), f"cumulative: {m}"
    assert m["L2"] == pytest.approx(0.25), f"VAD avg = mean(0.15, 0.25, 0.35): {m}"
    assert m["L2_per_step_avg"] == pytest.approx(0.4), f"UniAD avg = mean(0.2, 0.4, 0.6): {m}"


def test_collision_with_future_box():
    m = evaluate_planning(plan(lambda t: 3 + 0 * t), drive_scene())
    assert m["obj_col"] == 0.0, f"the GT path stays 1.6 m clear of the obstacle: {m}"
    assert m["obj_box_col"] == pytest.approx((1 / 4 + 1 / 6) / 3), \
        f"hit at 1.5 s only: cumulative [0, 0, 1/3, 1/4, 1/5, 1/6], avg of 1 s/2 s/3 s: {m}"
    m = evaluate_planning(plan(lambda t: 3 + 0 * t), drive_scene(obstacle_pts=0))
    assert m["obj_box_col"] == 0.0, "boxes without lidar points are not obstacles (upstream mask)"
    m = evaluate_planning(plan(lambda t: 0 * t), drive_scene(obstacle_global=(0, 6)))
    assert m["obj_col"] > 0 and m["obj_box_col"] == 0.0, f"collisions the GT also has do not count: {m}"


def test_future_boxes_move_into_current_frame_and_stop_at_scene_end():
    infos = [make_info("a", ego_fut_masks=np.array([1, 1, 0, 0, 0, 0], np.float32)),
             make_info("b", boxes=unit_box(1, 0), names=["car"], ego_translation=(0, 2, 0),
                       ego_rotation=yaw_quat(np.pi / 2)),
             make_info("c", scene="other", boxes=unit_box(0, 0), names=["car"])]
    boxes = future_boxes(infos, 0)
    assert len(boxes) == 1, f"the next frame is another scene: stop there, got {len(boxes)} steps"
    assert np.allclose(boxes[0][0, [0, 1, 6]], [0, 3, np.pi / 2]), f"rotated/translated box wrong: {boxes[0]}"


def test_no_complete_future_gives_nan():
    infos = [make_info("a", ego_fut_masks=np.array([1, 1, 0, 0, 0, 0], np.float32))]
    m = evaluate_planning([dict(final_planning=np.zeros((6, 2)))], infos)
    assert np.isnan(m["L2"]), f"no counted sample must not pretend a perfect score: {m}"
