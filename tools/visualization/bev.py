"""Bird's-eye view of one frame: ego at the centre, LiDAR frame (x right, y up), metres on the axes."""
from typing import Optional, Sequence

import cv2
import numpy as np

from . import style
from .frame import FrameGT, FramePred
from .geometry import box_corners, heading_segment

FONT = cv2.FONT_HERSHEY_SIMPLEX


def line_type(thickness: int) -> int:
    """Anti-aliased thick lines; 1-pixel lines stay crisp so they keep their exact colour."""
    return cv2.LINE_AA if thickness > 1 else cv2.LINE_8


class BevCanvas:
    """An RGB canvas of ``size`` x ``size`` pixels showing [-half_range, half_range] m in x and y.

    A ``margin`` of pixels on the left and bottom carries the axis labels in metres; the plot area is the
    remaining square, so one metre is ``(size - margin) / (2 * half_range)`` pixels.
    """

    def __init__(self, size: int = 660, half_range: float = style.BEV_RANGE, margin: int = 36) -> None:
        self.size, self.half_range, self.margin = size, half_range, margin
        self.scale = (size - margin) / (2 * half_range)
        self.image = np.full((size, size, 3), style.BACKGROUND, dtype=np.uint8)

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """Pixel (column, row) of LiDAR-frame points ``[..., 2]`` (float)."""
        xy = np.asarray(xy, dtype=np.float64)
        col = self.margin + (xy[..., 0] + self.half_range) * self.scale
        row = (self.half_range - xy[..., 1]) * self.scale
        return np.stack([col, row], -1)

    def polyline(self, xy: np.ndarray, color: style.Color, thickness: int = 2, closed: bool = False) -> None:
        if len(xy) < 2:
            return
        pts = np.round(self.to_px(xy) * 16).astype(np.int32)  # 4 fractional bits: sub-pixel placement
        cv2.polylines(self.image, [pts], closed, color, thickness, line_type(thickness), shift=4)

    def text(self, xy: np.ndarray, label: str, color: style.Color = style.TEXT_COLOR, scale: float = 0.35) -> None:
        col, row = self.to_px(xy)
        cv2.putText(self.image, label, (int(col), int(row)), FONT, scale, color, 1, cv2.LINE_AA)

    def draw_axes(self, step: float = 10.0) -> None:
        """Grid every ``step`` metres with the values on the left and bottom margins."""
        ticks = np.arange(-self.half_range, self.half_range + 1e-6, step)
        low, high = -self.half_range, self.half_range
        for t in ticks:
            self.polyline(np.array([[t, low], [t, high]]), style.GRID_COLOR, 1)
            self.polyline(np.array([[low, t], [high, t]]), style.GRID_COLOR, 1)
            # labels at the canvas edges are pulled inside it
            col, row = self.to_px(np.array([t, low]))
            cv2.putText(self.image, f"{t:g}", (min(int(col) - 8, self.size - 18), self.size - 20), FONT, 0.33,
                        style.TEXT_COLOR, 1, cv2.LINE_AA)
            col, row = self.to_px(np.array([low, t]))
            cv2.putText(self.image, f"{t:g}", (2, max(int(row) + 4, 26)), FONT, 0.33, style.TEXT_COLOR, 1,
                        cv2.LINE_AA)
        cv2.putText(self.image, "x (m)", (self.size // 2 - 10, self.size - 4), FONT, 0.35, style.TEXT_COLOR, 1,
                    cv2.LINE_AA)
        cv2.putText(self.image, "y (m)", (2, 12), FONT, 0.35, style.TEXT_COLOR, 1, cv2.LINE_AA)


def draw_box(canvas: BevCanvas, box: np.ndarray, color: style.Color, thickness: int,
             track_id: Optional[int] = None) -> None:
    """Footprint, heading line and (optionally) the track id of one box [>=7]."""
    corners = box_corners(box[None])[0, :4, :2]
    canvas.polyline(corners, color, thickness, closed=True)
    canvas.polyline(heading_segment(box), color, thickness)
    if track_id is not None and track_id >= 0:
        canvas.text(box[:2] + np.array([0.8, 0.8]), str(int(track_id)))


def draw_ego(canvas: BevCanvas) -> None:
    """The ego car, filled, heading +y."""
    half = np.array([style.EGO_WIDTH / 2, style.EGO_LENGTH / 2])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    pts = np.round(canvas.to_px(corners)).astype(np.int32)
    cv2.fillPoly(canvas.image, [pts], style.EGO_COLOR, cv2.LINE_AA)


def with_origin(traj: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Trajectory positions [T, 2] prefixed with the start point [2]."""
    return np.concatenate([np.asarray(origin, dtype=np.float64)[None, :2], traj], 0)


def render_bev(gt: Optional[FrameGT], pred: Optional[FramePred], class_names: Sequence[str],
               map_class_names: Sequence[str], size: int = 660, half_range: float = style.BEV_RANGE,
               score_threshold: float = style.SCORE_THRESHOLD,
               map_score_threshold: float = style.MAP_SCORE_THRESHOLD) -> np.ndarray:
    """The BEV image [size, size, 3] (RGB uint8) of one frame.

    Ground truth is drawn thin in the class colour blended with white, predictions above the thresholds in
    the full class colour: map polylines, boxes with heading and track id, each agent's trajectories (best
    mode bold, the others faint) and ground-truth future, the ego car, its plan for the driving command
    (best mode bold) and ground-truth future, and the command as text.
    """
    canvas = BevCanvas(size, half_range)
    canvas.draw_axes()
    if gt is not None:
        _draw_gt(canvas, gt, class_names, map_class_names)
    if pred is not None:
        _draw_pred(canvas, pred, gt, class_names, map_class_names, score_threshold, map_score_threshold)
    draw_ego(canvas)
    if gt is not None and gt.command is not None:
        cv2.putText(canvas.image, f"command: {style.COMMANDS[gt.command]}", (canvas.margin + 6, 18), FONT, 0.5,
                    style.TEXT_COLOR, 1, cv2.LINE_AA)
    return canvas.image


def _draw_gt(canvas: BevCanvas, gt: FrameGT, class_names: Sequence[str], map_class_names: Sequence[str]) -> None:
    for label, lines in gt.map_lines.items():
        for line in lines:
            canvas.polyline(line, style.tint(style.map_color(map_class_names, label), 0.5), 1)
    for i, box in enumerate(gt.boxes):
        if gt.labels[i] < 0:
            continue
        color = style.tint(style.class_color(class_names, int(gt.labels[i])), 0.5)
        draw_box(canvas, box, color, 1)
        if len(gt.agent_future_masks) and gt.agent_future_masks[i].any():
            future = gt.agent_futures[i][gt.agent_future_masks[i].astype(bool)]
            canvas.polyline(with_origin(future, box[:2]), color, 1)
    if len(gt.ego_future) and gt.ego_future_mask.any():
        future = gt.ego_future[gt.ego_future_mask.astype(bool)]
        canvas.polyline(with_origin(future, np.zeros(2)), style.tint(style.PLAN_COLOR, 0.5), 1)


def _draw_pred(canvas: BevCanvas, pred: FramePred, gt: Optional[FrameGT], class_names: Sequence[str],
               map_class_names: Sequence[str], score_threshold: float, map_score_threshold: float) -> None:
    for line, score, label in zip(pred.map_lines, pred.map_scores, pred.map_labels):
        if score >= map_score_threshold:
            canvas.polyline(line, style.map_color(map_class_names, int(label)), 2)
    for i, box in enumerate(pred.boxes):
        if pred.scores[i] < score_threshold:
            continue
        color = style.class_color(class_names, int(pred.labels[i]))
        if pred.trajs is not None:
            _draw_modes(canvas, pred.trajs[i], pred.traj_scores[i], box[:2], color)
        draw_box(canvas, box, color, 2, None if pred.ids is None else int(pred.ids[i]))
    if pred.plans is not None:
        command = gt.command if gt is not None and gt.command is not None else int(pred.plan_scores.max(1).argmax())
        _draw_modes(canvas, pred.plans[command], pred.plan_scores[command], np.zeros(2), style.PLAN_COLOR)


def _draw_modes(canvas: BevCanvas, trajs: np.ndarray, scores: np.ndarray, origin: np.ndarray,
                color: style.Color) -> None:
    """Modes [M, T, 2] from ``origin``: the others faint first, the best one bold on top."""
    best = int(np.argmax(scores))
    for mode, traj in enumerate(trajs):
        if mode != best:
            canvas.polyline(with_origin(traj, origin), style.tint(color, 0.7), 1)
    canvas.polyline(with_origin(trajs[best], origin), color, 2)

