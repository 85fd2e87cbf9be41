"""kmeans_motion: 6 motion modes per class -> kmeans_motion_6.npy, (10, 6, 12, 2) float64.

Per class (class axis in ku.CLASS_NAMES order), GT agents within 55 m whose 12 future steps are all valid
contribute their future positions (cumulative sum of the displacements) rotated by -yaw into the agent's
heading frame (x along the heading). Unlike upstream, a class without samples does not shrink the class
axis: it falls back to all classes pooled (see kmeans_utils).
"""
import os
import sys
from typing import List

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.kmeans import kmeans_utils as ku  # noqa: E402

K = 6
FUT_TS = 12


def agent_frame_futures(infos: List[dict]) -> List[np.ndarray]:
    """Per class, the flattened agent-frame futures [N_c, FUT_TS * 2] of fully observed agents."""
    groups = [[] for _ in ku.CLASS_NAMES]
    for info in infos:
        boxes, names = info["gt_boxes"], info["gt_names"]
        trajs, masks = info["gt_agent_fut_trajs"], info["gt_agent_fut_masks"]
        for i in range(len(boxes)):
            if names[i] not in ku.CLASS_NAMES or masks[i].sum() < FUT_TS:
                continue
            if np.linalg.norm(boxes[i, :2]) >= ku.RANGE:
                continue
            yaw = boxes[i, 6]
            c, s = np.cos(yaw), np.sin(yaw)
            pos = np.cumsum(trajs[i], axis=0) @ np.array([[c, -s], [s, c]])  # rotate by -yaw
            groups[ku.CLASS_NAMES.index(names[i])].append(pos.reshape(-1))
    return [np.array(g).reshape(-1, FUT_TS * 2) for g in groups]


def motion_anchors(infos: List[dict], seed: int, k: int = K) -> np.ndarray:
    """Anchors [10, k, FUT_TS, 2] in the agent frame."""
    centers = ku.cluster_groups(agent_frame_futures(infos), k, seed, ku.CLASS_NAMES, "agent futures",
                                "agents within 55 m with all 12 future steps valid, i.e. scenes of >= 13 key frames")
    return centers.reshape(len(ku.CLASS_NAMES), k, FUT_TS, 2)


def main(args) -> None:
    anchors = motion_anchors(ku.load_infos(args.info_path), args.seed)
    ku.save(anchors, args.out_dir, "kmeans_motion_%d.npy" % K)
    ku.plot(list(anchors), args.vis_dir, "kmeans_motion_%d.png" % K, ku.CLASS_NAMES)


if __name__ == "__main__":
    ku.run(main, __doc__)
