"""One frame's image: the camera grid on top, the BEV below with a legend beside it."""
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from . import style
from .bev import render_bev
from .camera import render_cameras
from .frame import FrameGT, FramePred

FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class RenderOptions:
    """Sizes and thresholds of a frame render (tile = one camera's (w, h) in pixels)."""

    tile_width: int = 352
    tile_height: int = 198
    bev_range: float = style.BEV_RANGE
    score_threshold: float = style.SCORE_THRESHOLD
    map_score_threshold: float = style.MAP_SCORE_THRESHOLD
    gt_in_cameras: bool = False


def render_frame(gt: FrameGT, pred: Optional[FramePred], class_names: Sequence[str],
                 map_class_names: Sequence[str], options: Optional[RenderOptions] = None,
                 title: str = "") -> np.ndarray:
    """RGB image [2 h + b, 3 w, 3] for tile (w, h): the camera grid, then the BEV (b = 0.625 * 3 w square) and legend."""
    options = options or RenderOptions()
    cams = render_cameras(gt, pred, class_names, map_class_names, (options.tile_width, options.tile_height),
                          options.score_threshold, options.map_score_threshold, options.gt_in_cameras)
    width = cams.shape[1]
    bev_size = int(width * 0.625)
    bev = render_bev(gt, pred, class_names, map_class_names, bev_size, options.bev_range, options.score_threshold,
                     options.map_score_threshold)
    legend = render_legend(gt, pred, class_names, map_class_names, (width - bev_size, bev_size), options, title)
    return np.concatenate([cams, np.concatenate([bev, legend], 1)], 0)


def render_legend(gt: FrameGT, pred: Optional[FramePred], class_names: Sequence[str],
                  map_class_names: Sequence[str], size, options: RenderOptions, title: str) -> np.ndarray:
    """Legend panel (size = (w, h)): frame, what each line style means, the colours of the classes shown."""
    width, height = size
    panel = np.full((height, width, 3), style.BACKGROUND, dtype=np.uint8)
    lines = [title or gt.scene, f"sample {gt.token[:12]}", "",
             "thick: prediction", "thin, pale: ground truth",
             f"boxes score >= {options.score_threshold:g}", f"map score >= {options.map_score_threshold:g}",
             "bold: best mode; faint: others", "black: ego; red: plan", ""]
    row = 20
    for text in lines:
        cv2.putText(panel, text, (8, row), FONT, 0.42, style.TEXT_COLOR, 1, cv2.LINE_AA)
        row += 18
    shown = set(int(label) for label in gt.labels if label >= 0)
    if pred is not None:
        shown |= set(int(label) for label, score in zip(pred.labels, pred.scores) if score >= options.score_threshold)
    entries = [(class_names[i], style.class_color(class_names, i)) for i in sorted(shown) if i < len(class_names)]
    entries += [(name, style.map_color(map_class_names, i)) for i, name in enumerate(map_class_names)]
    for name, color in entries:
        if row > height - 8:
            break
        cv2.rectangle(panel, (8, row - 10), (26, row + 2), color, -1)
        cv2.putText(panel, name, (32, row), FONT, 0.42, style.TEXT_COLOR, 1, cv2.LINE_AA)
        row += 18
    return panel
