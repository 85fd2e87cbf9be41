"""The six camera images of a frame with 3D boxes and map lines projected through each camera's lidar2img."""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from . import style
from .bev import line_type
from .frame import FrameGT, FramePred
from .geometry import BOX_EDGES, box_corners, in_front, project_polyline, project_segment

FONT = cv2.FONT_HERSHEY_SIMPLEX


def load_image(path: str, size: Tuple[int, int]) -> Tuple[np.ndarray, Tuple[float, float]]:
    """RGB image resized to ``size`` (w, h) and the (x, y) scale from the original pixels.

    A missing image is a user error (OSError naming the file), as in the data loader.
    """
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"camera image {path} is missing or unreadable; check data_root in the config.")
    height, width = image.shape[:2]
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (size[0] / width, size[1] / height)


def scaled_projection(lidar2img: np.ndarray, scale: Tuple[float, float]) -> np.ndarray:
    """lidar2img [4, 4] of the original image turned into the one of the image resized by ``scale``."""
    return np.diag([scale[0], scale[1], 1.0, 1.0]) @ lidar2img


def draw_segments(image: np.ndarray, segments, color: style.Color, thickness: int) -> None:
    for p0, p1 in segments:
        pts = np.round(np.stack([p0, p1]) * 16).astype(np.int64)
        if np.abs(pts).max() > 2 ** 28:  # far outside the image: cv2 needs int32 coordinates
            continue
        cv2.line(image, tuple(int(v) for v in pts[0]), tuple(int(v) for v in pts[1]), color, thickness,
                 line_type(thickness), shift=4)


def draw_box(image: np.ndarray, corners: np.ndarray, lidar2img: np.ndarray, color: style.Color,
             thickness: int) -> None:
    """Twelve edges of one box (corners [8, 3]), each clipped at the camera's near plane."""
    if not in_front(corners, lidar2img):
        return
    segments = [project_segment(corners[a], corners[b], lidar2img) for a, b in BOX_EDGES]
    draw_segments(image, [s for s in segments if s is not None], color, thickness)


def draw_ground_line(image: np.ndarray, line: np.ndarray, lidar2img: np.ndarray, color: style.Color,
                     thickness: int) -> None:
    """A BEV polyline [P, 2] on the road surface (z = GROUND_HEIGHT)."""
    points = np.concatenate([line, np.full((len(line), 1), style.GROUND_HEIGHT)], -1)
    draw_segments(image, project_polyline(points, lidar2img), color, thickness)


def render_camera(path: str, lidar2img: np.ndarray, name: str, gt: Optional[FrameGT], pred: Optional[FramePred],
                  class_names: Sequence[str], map_class_names: Sequence[str], size: Tuple[int, int],
                  score_threshold: float, map_score_threshold: float, gt_boxes: bool) -> np.ndarray:
    """One camera [h, w, 3]: GT map lines (faint), predicted map lines and boxes, GT boxes if ``gt_boxes``."""
    image, scale = load_image(path, size)
    proj = scaled_projection(lidar2img, scale)
    if gt is not None:
        for label, lines in gt.map_lines.items():
            for line in lines:
                draw_ground_line(image, line, proj, style.tint(style.map_color(map_class_names, label), 0.5), 1)
        if gt_boxes and len(gt.boxes):
            for corners, label in zip(box_corners(gt.boxes), gt.labels):
                if label >= 0:
                    draw_box(image, corners, proj, style.tint(style.class_color(class_names, int(label)), 0.5), 1)
    if pred is not None:
        for line, score, label in zip(pred.map_lines, pred.map_scores, pred.map_labels):
            if score >= map_score_threshold:
                draw_ground_line(image, line, proj, style.map_color(map_class_names, int(label)), 2)
        keep = pred.scores >= score_threshold
        if keep.any():
            for corners, label in zip(box_corners(pred.boxes[keep]), pred.labels[keep]):
                draw_box(image, corners, proj, style.class_color(class_names, int(label)), 2)
    cv2.rectangle(image, (0, 0), (len(name) * 8 + 6, 16), style.BACKGROUND, -1)
    cv2.putText(image, name, (3, 12), FONT, 0.4, style.TEXT_COLOR, 1, cv2.LINE_AA)
    return image


def render_cameras(gt: FrameGT, pred: Optional[FramePred], class_names: Sequence[str],
                   map_class_names: Sequence[str], tile: Tuple[int, int] = (352, 198),
                   score_threshold: float = style.SCORE_THRESHOLD,
                   map_score_threshold: float = style.MAP_SCORE_THRESHOLD, gt_boxes: bool = False) -> np.ndarray:
    """The 2 x 3 camera grid [2 * h, 3 * w, 3] in the layout of ``style.CAMERA_LAYOUT`` (tile = (w, h)).

    A camera the frame does not have stays blank.
    """
    rows = []
    for names in style.CAMERA_LAYOUT:
        row = []
        for name in names:
            if name in gt.cameras:
                path, lidar2img = gt.cameras[name]
                row.append(render_camera(path, lidar2img, name, gt, pred, class_names, map_class_names, tile,
                                         score_threshold, map_score_threshold, gt_boxes))
            else:
                row.append(np.full((tile[1], tile[0], 3), style.BACKGROUND, dtype=np.uint8))
        rows.append(np.concatenate(row, 1))
    return np.concatenate(rows, 0)
