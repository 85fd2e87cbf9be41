"""Fixtures of the dataset tests: a tiny two-scene nuScenes-style dataset in tmp_path."""
import numpy as np
import pytest

from tests.datasets.info_factory import make_info, write_infos


@pytest.fixture
def tiny_nuscenes(tmp_path):
    """Two scenes of three key frames (0.5 s apart, scene 1 starts 20 s after scene 0), pkl in shuffled order.

    The ego drives 1 m per frame along global +x with yaw 0; the future-mask sums are 2, 1, 0 per scene.
    """
    root = str(tmp_path / "nuscenes")
    infos = []
    for scene in range(2):
        for frame in range(3):
            info = make_info(root, scene, frame, timestamp=(20_000_000 * scene) + 500_000 * frame,
                             ego_xy=(float(frame), 0.0))
            masks = np.zeros(6, dtype=np.float32)
            masks[: 2 - frame] = 1.0
            info["gt_ego_fut_masks"] = masks
            infos.append(info)
    shuffled = [infos[i] for i in (3, 0, 5, 1, 4, 2)]
    path = write_infos(str(tmp_path / "infos.pkl"), shuffled)
    return dict(root=root, ann_file=path, infos=infos)
