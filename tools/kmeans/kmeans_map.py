"""kmeans_map: 100 map anchors from map polyline centres -> kmeans_map_100.npy, (100, 20, 2) float64.

The vertex mean (x, y) of every GT map polyline (all classes) is clustered; each centre becomes a
20-point straight segment 8 m long along the driving direction (x fixed, y = centre_y + linspace(-4, 4)).
"""
import os
import sys
from typing import List

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.kmeans import kmeans_utils as ku  # noqa: E402

K = 100
NUM_POINTS = 20


def map_anchors(infos: List[dict], seed: int, k: int = K) -> np.ndarray:
    """Anchors [k, NUM_POINTS, 2] from the infos' map_annos."""
    centers = [np.asarray(line)[:, :2].mean(axis=0) for info in infos
               for lines in info["map_annos"].values() for line in lines]
    centers = ku.cluster(np.array(centers).reshape(-1, 2), k, seed, "map polyline centres")
    anchors = np.zeros((k, NUM_POINTS, 2))
    anchors[:, :, 0] = centers[:, :1]
    anchors[:, :, 1] = centers[:, 1:2] + np.linspace(-4.0, 4.0, NUM_POINTS)
    return anchors


def main(args) -> None:
    anchors = map_anchors(ku.load_infos(args.info_path), args.seed)
    ku.save(anchors, args.out_dir, "kmeans_map_%d.npy" % K)
    ku.plot([anchors], args.vis_dir, "kmeans_map_%d.png" % K, ("map anchors",))


if __name__ == "__main__":
    ku.run(main, __doc__)
