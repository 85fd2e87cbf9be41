"""Videos: frame count and size survive the mp4 writer and the GIF fallback."""
import numpy as np

from tools.visualization.video import video_info, write_video


def frames(count: int, height: int, width: int):
    return [np.full((height, width, 3), 20 * i, dtype=np.uint8) for i in range(count)]


def test_mp4_has_every_frame_at_the_frame_size(tmp_path):
    path = write_video(frames(5, 96, 128), str(tmp_path / "scene.mp4"), fps=2)
    info = video_info(path)
    assert info == dict(frames=5, width=128, height=96), info


def test_odd_sizes_are_cropped_to_even(tmp_path):
    path = write_video(frames(3, 97, 129), str(tmp_path / "odd.mp4"))
    info = video_info(path)
    assert (info["frames"], info["width"], info["height"]) == (3, 128, 96)


def test_gif_keeps_frames_and_size(tmp_path):
    path = write_video(frames(4, 40, 60), str(tmp_path / "scene.gif"), fps=4)
    assert path.endswith(".gif")
    assert video_info(path) == dict(frames=4, width=60, height=40)
