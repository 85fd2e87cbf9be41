"""kmeans_det: 900 detection anchors from GT box centres -> kmeans_det_900.npy, (900, 11) float64.

Every GT box (all names, no valid-flag filter) within 55 m BEV range contributes its centre (x, y, z)
in the lidar frame; each centre is completed to [x, y, z, w, l, h, sin_yaw, cos_yaw, vx, vy, vz] with
log-sizes 1, yaw 90 degrees (sin 1, cos 0) and zero velocity, as upstream.
"""
import os
import sys
from typing import List

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.kmeans import kmeans_utils as ku  # noqa: E402

K = 900
TAIL = (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0)  # w, l, h, sin, cos, vx, vy, vz


def det_anchors(infos: List[dict], seed: int, k: int = K) -> np.ndarray:
    """Anchors [k, 11] from the infos' gt_boxes."""
    centers = np.concatenate([info["gt_boxes"][:, :3] for info in infos] + [np.zeros((0, 3))], axis=0)
    centers = centers[np.linalg.norm(centers[:, :2], axis=1) < ku.RANGE]
    centers = ku.cluster(centers, k, seed, "box centres")
    return np.concatenate([centers, np.tile(np.array(TAIL), (k, 1))], axis=1)


def main(args) -> None:
    anchors = det_anchors(ku.load_infos(args.info_path), args.seed)
    ku.save(anchors, args.out_dir, "kmeans_det_%d.npy" % K)
    ku.plot([anchors[:, :2]], args.vis_dir, "kmeans_det_%d.png" % K, ("det anchors (x, y)",), scatter=True)


if __name__ == "__main__":
    ku.run(main, __doc__)
