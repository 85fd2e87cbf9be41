"""Join frame images into a video: mp4 through OpenCV's writer, an animated GIF (Pillow) where it cannot."""
import logging
import os
from typing import Sequence

import cv2
import numpy as np

_logger = logging.getLogger(__name__)


def write_video(frames: Sequence[np.ndarray], path: str, fps: float = 2.0) -> str:
    """Write RGB frames (all [H, W, 3] uint8, same size) to ``path``; returns the path written.

    ``path`` ending in ``.mp4`` is tried with the ``mp4v`` codec first; when OpenCV has no writer for it the
    frames go to the same name with ``.gif``. H and W are made even (codecs need it) by dropping one row or
    column.
    """
    if not frames:
        raise ValueError("write_video: no frames to write")
    height, width = frames[0].shape[:2]
    height, width = height - height % 2, width - width % 2
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    if path.endswith(".mp4"):
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if writer.isOpened():
            for frame in frames:
                writer.write(cv2.cvtColor(np.ascontiguousarray(frame[:height, :width]), cv2.COLOR_RGB2BGR))
            writer.release()
            return path
        _logger.warning("OpenCV cannot write mp4 here; writing a GIF instead")
        path = path[: -len(".mp4")] + ".gif"
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(frame[:height, :width])) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path


def video_info(path: str) -> dict:
    """``{frames, width, height}`` of a video written by :func:`write_video` (mp4 or GIF)."""
    if path.endswith(".gif"):
        from PIL import Image

        with Image.open(path) as image:
            return dict(frames=image.n_frames, width=image.width, height=image.height)
    capture = cv2.VideoCapture(path)
    count = 0
    width = height = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        height, width = frame.shape[:2]
    capture.release()
    return dict(frames=count, width=width, height=height)
