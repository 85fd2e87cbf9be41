"""Hand-built nuScenes-style info lists (spec 2.3 schema) with tiny images and lidar files."""
import os
import pickle
from typing import Dict, List, Sequence

import numpy as np

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
CAMERA_YAWS = (0.0, -55.0, 55.0, 180.0, 110.0, -110.0)  # degrees, counter-clockwise from lidar +y
IMG_H, IMG_W = 18, 32
INTRINSIC = np.array([[20.0, 0.0, 16.0], [0.0, 20.0, 9.0], [0.0, 0.0, 1.0]])
CAM_OFFSET = np.array([0.0, 1.0, 1.5])  # every camera sits 1 m ahead of and 1.5 m above the lidar
CLASS_NAMES = [
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
]


def yaw_quaternion(yaw: float) -> List[float]:
    """(w, x, y, z) of a rotation by ``yaw`` radians about z."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def rot_z(yaw: float) -> np.ndarray:
    cos, sin = np.cos(yaw), np.sin(yaw)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def sensor2lidar_rotation(yaw_deg: float) -> np.ndarray:
    """Camera axes (x right, y down, z forward) in the lidar frame (x right, y forward, z up)."""
    front = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    return rot_z(np.deg2rad(yaw_deg)) @ front


def make_info(
    root: str,
    scene: int,
    frame: int,
    timestamp: int,
    ego_xy: Sequence[float] = (0.0, 0.0),
    ego_yaw: float = 0.0,
    boxes: np.ndarray = None,
    names: Sequence[str] = None,
    num_lidar_pts: Sequence[int] = None,
    velocity: np.ndarray = None,
) -> Dict:
    """One key frame: 6 tiny PNG images, a 5-float lidar file and annotations in spec 2.3 layout."""
    import cv2

    token = f"s{scene}f{frame}"
    cams = {}
    for cam, yaw in zip(CAMERAS, CAMERA_YAWS):
        path = os.path.join(root, "samples", cam, f"{token}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        img = np.full((IMG_H, IMG_W, 3), 40, dtype=np.uint8)
        img[:, :, 0] = 10 * (frame + 1)  # blue channel encodes the frame
        cv2.imwrite(path, img)
        cams[cam] = dict(
            data_path=path,
            type=cam,
            sample_data_token=f"{token}_{cam}",
            sensor2ego_translation=[0.0, 0.0, 1.5],
            sensor2ego_rotation=[1.0, 0.0, 0.0, 0.0],
            ego2global_translation=[float(ego_xy[0]), float(ego_xy[1]), 0.0],
            ego2global_rotation=yaw_quaternion(ego_yaw),
            timestamp=timestamp,
            sensor2lidar_rotation=sensor2lidar_rotation(yaw),
            sensor2lidar_translation=CAM_OFFSET.copy(),
            cam_intrinsic=INTRINSIC.copy(),
        )
    lidar_path = os.path.join(root, "samples", "LIDAR_TOP", f"n008-{token}.pcd.bin")
    os.makedirs(os.path.dirname(lidar_path), exist_ok=True)
    points = np.array([[0.0, 11.0, 1.5, 1.0, 0.0], [2.0, 20.0, 0.5, 1.0, 0.0], [0.0, -5.0, 0.0, 1.0, 0.0]])
    points.astype(np.float32).tofile(lidar_path)
    if boxes is None:
        boxes = np.array([[1.0, 10.0, 0.0, 4.0, 2.0, 1.5, 0.3], [5.0, 70.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                          [-3.0, 4.0, 0.0, 0.5, 0.5, 1.7, 3.0]])
        names = ["car", "car", "animal"]
        num_lidar_pts = [5, 3, 2]
    num = len(boxes)
    if velocity is None:
        velocity = np.tile([[1.0, 0.5]], (num, 1))
    return dict(
        lidar_path=lidar_path,
        token=token,
        scene_token=f"scene{scene}",
        map_location="singapore-onenorth",
        timestamp=timestamp,
        lidar2ego_translation=[0.0, 0.0, 0.0],
        lidar2ego_rotation=[1.0, 0.0, 0.0, 0.0],
        ego2global_translation=[float(ego_xy[0]), float(ego_xy[1]), 0.0],
        ego2global_rotation=yaw_quaternion(ego_yaw),
        cams=cams,
        sweeps=[] if frame == 0 else [dict(data_path=lidar_path, type="lidar")],
        map_annos={
            1: [np.array([[-5.0, -20.0], [-5.0, 0.0], [-5.0, 20.0]])],
            0: [np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]])],
            2: [np.array([[10.0, -30.0], [10.0, 30.0]]), np.array([[-10.0, -30.0], [-12.0, 30.0]])],
        },
        gt_boxes=np.asarray(boxes, dtype=np.float64),
        gt_names=np.array(names),
        gt_velocity=np.asarray(velocity, dtype=np.float64),
        num_lidar_pts=np.array(num_lidar_pts),
        num_radar_pts=np.zeros(num, dtype=np.int64),
        valid_flag=np.array(num_lidar_pts) > 0,
        instance_inds=list(range(100 * scene, 100 * scene + num)),
        gt_agent_fut_trajs=np.ones((num, 12, 2), dtype=np.float32),
        gt_agent_fut_masks=np.ones((num, 12), dtype=np.float32),
        gt_ego_fut_trajs=np.tile(np.array([[0.0, 1.0]], dtype=np.float32), (6, 1)),
        gt_ego_fut_masks=np.ones(6, dtype=np.float32),
        gt_ego_fut_cmd=np.array([0.0, 0.0, 1.0], dtype=np.float32),
        ego_status=np.arange(10, dtype=np.float32),
    )


def write_infos(path: str, infos: List[Dict], version: str = "v1.0-mini") -> str:
    with open(path, "wb") as f:
        pickle.dump(dict(infos=infos, metadata=dict(version=version)), f)
    return path


# a reduced train pipeline: 32 x 18 images -> 24 x 16 crops, depth strides 4 and 8
AUG = {
    "resize_lim": (0.75, 0.75),
    "final_dim": (16, 24),
    "bot_pct_lim": (0.0, 0.0),
    "rot_lim": (0.0, 0.0),
    "H": 18,
    "W": 32,
    "rand_flip": False,
    "rot3d_range": [0, 0],
}
IMG_NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
TRAIN_PIPELINE = [
    dict(type="LoadMultiViewImageFromFiles", to_float32=True),
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="ResizeCropFlipImage"),
    dict(type="MultiScaleDepthMapGenerator", downsample=[4, 8]),
    dict(type="BBoxRotation"),
    dict(type="PhotoMetricDistortionMultiViewImage"),
    dict(type="NormalizeMultiviewImage", **IMG_NORM),
    dict(type="CircleObjectRangeFilter", class_dist_thred=[55] * 10),
    dict(type="InstanceNameFilter", classes=CLASS_NAMES),
    dict(type="VectorizeMap", roi_size=(30, 60), simplify=False, normalize=False, sample_num=20, permute=True),
    dict(type="NuScenesSparse4DAdaptor"),
    dict(
        type="Collect",
        keys=["img", "timestamp", "projection_mat", "image_wh", "gt_depth", "focal", "gt_bboxes_3d",
              "gt_labels_3d", "gt_map_labels", "gt_map_pts", "gt_agent_fut_trajs", "gt_agent_fut_masks",
              "gt_ego_fut_trajs", "gt_ego_fut_masks", "gt_ego_fut_cmd", "ego_status"],
        meta_keys=["T_global", "T_global_inv", "timestamp", "instance_id"],
    ),
]
CAMERA = dict(use_lidar=False, use_camera=True, use_radar=False, use_map=False, use_external=False)
