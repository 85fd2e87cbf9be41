"""kmeans_plan: 6 ego plan modes per driving command -> kmeans_plan_6.npy, (3, 6, 6, 2) float64.

Samples whose 6 ego future steps are all valid are grouped by command (0 right, 1 left, 2 straight);
their future positions (cumulative sum of the displacements, lidar frame) are clustered per command.
A command without samples falls back to all commands pooled (see kmeans_utils).
"""
import os
import sys
from typing import List

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.kmeans import kmeans_utils as ku  # noqa: E402

K = 6
EGO_FUT_TS = 6
COMMANDS = ("right", "left", "straight")


def ego_futures(infos: List[dict]) -> List[np.ndarray]:
    """Per command, flattened ego future positions [N_c, EGO_FUT_TS * 2]."""
    groups = [[] for _ in COMMANDS]
    for info in infos:
        if info["gt_ego_fut_masks"].sum() < EGO_FUT_TS:
            continue
        pos = np.cumsum(info["gt_ego_fut_trajs"], axis=0)
        groups[int(np.argmax(info["gt_ego_fut_cmd"]))].append(pos.reshape(-1))
    return [np.array(g).reshape(-1, EGO_FUT_TS * 2) for g in groups]


def plan_anchors(infos: List[dict], seed: int, k: int = K) -> np.ndarray:
    """Anchors [3, k, EGO_FUT_TS, 2] in the lidar frame."""
    centers = ku.cluster_groups(ego_futures(infos), k, seed, COMMANDS, "ego futures",
                                "samples with all 6 ego future steps valid, i.e. scenes of >= 7 key frames")
    return centers.reshape(len(COMMANDS), k, EGO_FUT_TS, 2)


def main(args) -> None:
    anchors = plan_anchors(ku.load_infos(args.info_path), args.seed)
    ku.save(anchors, args.out_dir, "kmeans_plan_%d.npy" % K)
    ku.plot(list(anchors), args.vis_dir, "kmeans_plan_%d.png" % K, COMMANDS)


if __name__ == "__main__":
    ku.run(main, __doc__)
