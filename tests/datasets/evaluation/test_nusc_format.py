"""Lidar-frame detections -> nuScenes submission boxes (global frame, attributes, tracking filter)."""
import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.evaluation.common import (lidar_boxes_to_global, quaternion_multiply,
                                                                quaternion_to_matrix)
from projects.mmdet3d_plugin.datasets.evaluation.detection.nusc_format import (format_nusc_submission,
                                                                              pick_attribute)
from projects.mmdet3d_plugin.datasets.evaluation.common import DETECTION_CLASS_RANGE
from tests.datasets.evaluation._builders import make_info, yaw_quat

CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
           "pedestrian", "traffic_cone")
META = dict(use_camera=True, use_lidar=False, use_radar=False, use_map=False, use_external=False)


def box(x, y, yaw=0.0, vx=0.0, vy=0.0):
    return [x, y, 0.5, 4.0, 2.0, 1.5, yaw, vx, vy, 0.0]


def test_quaternion_helpers():
    assert np.allclose(quaternion_to_matrix(yaw_quat(np.pi / 2)), [[0, -1, 0], [1, 0, 0], [0, 0, 1]]), \
        "90 degree yaw matrix"
    q = quaternion_multiply(np.array(yaw_quat(0.3)), np.array(yaw_quat(0.4)))
    assert np.allclose(q, yaw_quat(0.7)), "composing yaw rotations adds the angles"


def test_boxes_to_global_follow_both_transforms():
    info = make_info("t", ego_translation=(100, 200, 1), ego_rotation=yaw_quat(np.pi / 2))
    info["lidar2ego_translation"] = [1.0, 0.0, 1.8]
    out = lidar_boxes_to_global(np.array([box(10, 0, yaw=0.1, vx=2.0)]), info)
    assert np.allclose(out["ego_center"], [[11, 0, 2.3]]), f"lidar -> ego: {out['ego_center']}"
    assert np.allclose(out["center"], [[100, 211, 3.3]]), f"ego -> global (90 degree yaw): {out['center']}"
    assert np.allclose(out["velocity"], [[0, 2]]), f"velocity rotates without translation: {out['velocity']}"
    assert np.allclose(out["rotation"], [yaw_quat(np.pi / 2 + 0.1)]), f"heading composes: {out['rotation']}"
    assert np.allclose(out["wlh"], [[2.0, 4.0, 1.5]]), "nuScenes size order is (w, l, h)"


def test_boxes_to_global_matches_nuscenes_box():
    data_classes = pytest.importorskip("nuscenes.utils.data_classes")
    from pyquaternion import Quaternion

    info = make_info("t", ego_translation=(5, -3, 0.2), ego_rotation=[0.9, 0.05, -0.02, 0.43])
    info["lidar2ego_rotation"] = [0.7, 0.0, 0.0, 0.71]
    info["lidar2ego_translation"] = [0.9, 0.1, 1.8]
    ours = lidar_boxes_to_global(np.array([box(7, -2, yaw=1.2, vx=1.0, vy=-0.5)]), info)
    ref = data_classes.Box([7, -2, 0.5], [2.0, 4.0, 1.5], Quaternion(axis=[0, 0, 1], radians=1.2),
                           velocity=(1.0, -0.5, 0.0))
    for rot, trans in (("lidar2ego_rotation", "lidar2ego_translation"),
                       ("ego2global_rotation", "ego2global_translation")):
        ref.rotate(Quaternion(info[rot]))
        ref.translate(np.array(info[trans]))
    assert np.allclose(ours["center"][0], ref.center), "centre differs from the devkit Box"
    assert np.allclose(ours["velocity"][0], ref.velocity[:2]), "velocity differs from the devkit Box"
    assert np.allclose(ours["rotation"][0], ref.orientation.elements), "orientation quaternion differs"


@pytest.mark.parametrize("name, speed, attr", [
    ("car", 1.0, "vehicle.moving"), ("car", 0.1, "vehicle.parked"), ("bus", 0.1, "vehicle.stopped"),
    ("bus", 1.0, "vehicle.moving"), ("bicycle", 1.0, "cycle.with_rider"), ("bicycle", 0.0, "cycle.without_rider"),
    ("pedestrian", 1.0, "pedestrian.moving"), ("pedestrian", 0.1, "pedestrian.standing"),
    ("barrier", 1.0, ""), ("traffic_cone", 0.0, "")])
def test_attribute_from_speed_and_class(name, speed, attr):
    assert pick_attribute(name, speed) == attr, f"{name} at {speed} m/s"


def test_detection_submission_filters_by_class_range():
    det = dict(boxes_3d=np.array([box(10, 0, vx=3.0), box(45, 0), box(0, 29)], np.float32),
               scores_3d=np.array([0.9, 0.8, 0.7], np.float32), labels_3d=np.array([0, 8, 5]))
    sub = format_nusc_submission([det], [make_info("t")], CLASSES, DETECTION_CLASS_RANGE, META)
    boxes = sub["results"]["t"]
    assert sub["meta"] == META, "meta is the modality"
    assert [b["detection_name"] for b in boxes] == ["car", "barrier"], \
        f"pedestrian at 45 m is beyond its 40 m range: {boxes}"
    assert boxes[0]["attribute_name"] == "vehicle.moving" and boxes[0]["velocity"] == pytest.approx([3.0, 0.0])
    assert boxes[0]["detection_score"] == pytest.approx(0.9) and boxes[0]["size"] == pytest.approx([2, 4, 1.5])


def test_tracking_submission_threshold_ids_and_classes():
    det = dict(boxes_3d=np.array([box(10, 0), box(5, 5), box(0, 5), box(3, 3)], np.float32),
               scores_3d=np.array([0.5, 0.15, 0.6, 0.4], np.float32),
               cls_scores=np.array([0.6, 0.3, 0.7, 0.1], np.float32),
               labels_3d=np.array([0, 1, 5, 8]), instance_ids=np.array([7, 3, 9, 11]))
    sub = format_nusc_submission([det], [make_info("t")], CLASSES, DETECTION_CLASS_RANGE, META, tracking=True,
                                 tracking_threshold=0.2)
    boxes = sub["results"]["t"]
    assert [b["tracking_id"] for b in boxes] == ["7", "3"], \
        f"keep cls_scores >= 0.2 (even with a low scores_3d), drop barrier: {boxes}"
    assert [b["tracking_name"] for b in boxes] == ["car", "truck"]
    assert boxes[1]["tracking_score"] == pytest.approx(0.15), "tracking_score is the re-weighted score"
    assert "attribute_name" not in boxes[0], "tracking entries carry no attribute"


def test_submission_with_no_boxes_keeps_the_sample():
    det = dict(boxes_3d=np.zeros((0, 10), np.float32), scores_3d=np.zeros(0, np.float32),
               labels_3d=np.zeros(0, np.int64), instance_ids=np.zeros(0, np.int64))
    sub = format_nusc_submission([det], [make_info("t")], CLASSES, DETECTION_CLASS_RANGE, META, tracking=True)
    assert sub["results"] == {"t": []}, "every sample must appear, even without boxes"
    with pytest.raises(ValueError, match="results for"):
        format_nusc_submission([det, det], [make_info("t")], CLASSES, DETECTION_CLASS_RANGE, META)
