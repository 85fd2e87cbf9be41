"""Shared pieces of the four k-means anchor scripts: CLI, info loading, clustering, saving and plotting.

Small data sets (e.g. the synthetic one) are handled by one rule, applied per clustered group:
- n >= K distinct samples: sklearn KMeans(n_clusters=K, random_state=seed), otherwise default settings as upstream;
- 0 < n < K distinct samples: every distinct sample (sorted) becomes a centre and the remaining K - n
  centres repeat them in order (a warning says so); the anchor file keeps its upstream shape;
- n == 0: the script's fallback (motion / plan: the samples of all groups pooled); with nothing to cluster
  at all the script stops with one line naming the info file.
"""
import argparse
import logging
import os
import pickle
import sys
import warnings
from typing import List, Optional, Sequence

import numpy as np

logger = logging.getLogger("kmeans")

DEFAULT_INFO = "data/infos/nuscenes_infos_train.pkl"
DEFAULT_OUT = "data/kmeans"
DEFAULT_VIS = "vis/kmeans"
# Motion anchors are indexed with the model's class ids: keep the configs' class_names order.
CLASS_NAMES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
               "pedestrian", "traffic_cone")
RANGE = 55.0  # BEV range (m) of boxes used for det and motion anchors


class KMeansInputError(ValueError):
    """Nothing to cluster, or the info file is missing."""


def parse_args(description: str, argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Common CLI: --info-path, --out-dir, --vis-dir, --seed."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--info-path", default=DEFAULT_INFO, help="training info pkl of the converter")
    parser.add_argument("--out-dir", default=DEFAULT_OUT, help="folder of the anchor .npy files")
    parser.add_argument("--vis-dir", default=DEFAULT_VIS, help="folder of the anchor plots")
    parser.add_argument("--seed", type=int, default=0, help="random_state of KMeans (upstream: unseeded)")
    return parser.parse_args(argv)


def load_infos(path: str) -> List[dict]:
    """Infos of a converter pkl sorted by timestamp."""
    if not os.path.isfile(path):
        raise KMeansInputError("%s is missing; run tools/data_converter/nuscenes_converter.py first "
                               "(or pass --info-path)." % path)
    with open(path, "rb") as f:
        infos = pickle.load(f)["infos"]
    return sorted(infos, key=lambda info: info["timestamp"])


def cluster(features: np.ndarray, k: int, seed: int, what: str) -> np.ndarray:
    """K centres of features [N, D] -> [k, D] float64, following the module's small-data rule."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    features = np.asarray(features, dtype=np.float64)
    if len(features) == 0:
        raise KMeansInputError("%s: no samples to cluster" % what)
    distinct = np.unique(features, axis=0)
    if len(distinct) < k:
        logger.warning("%s: %d distinct samples for %d clusters; using every one as a centre and repeating them",
                       what, len(distinct), k)
        return distinct[np.arange(k) % len(distinct)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        centers = KMeans(n_clusters=k, random_state=seed).fit(features).cluster_centers_.astype(np.float64)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        # near-duplicate samples (e.g. static objects) leave some centres coinciding; the shape is kept
        logger.warning("%s: k-means found fewer than %d distinct clusters", what, k)
    return centers


def cluster_groups(groups: Sequence[np.ndarray], k: int, seed: int, names: Sequence[str],
                   what: str, needs: str) -> np.ndarray:
    """Cluster each group separately -> [G, k, D]; an empty group uses all groups' samples pooled.

    `needs` says which samples count, for the error raised when every group is empty."""
    pooled = np.concatenate([g for g in groups if len(g)], axis=0) if any(len(g) for g in groups) else np.zeros(0)
    out = []
    for name, g in zip(names, groups):
        if len(g) == 0:
            if len(pooled) == 0:
                raise KMeansInputError("%s: no samples at all (needs %s)" % (what, needs))
            logger.warning("%s: no samples of '%s'; using the samples of all groups", what, name)
            g = pooled
        out.append(cluster(g, k, seed, "%s[%s]" % (what, name)))
    return np.stack(out)


def save(anchors: np.ndarray, out_dir: str, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    np.save(path, anchors)
    logger.info("wrote %s %s", path, tuple(anchors.shape))
    return path


def plot(lines: Sequence[np.ndarray], vis_dir: str, name: str, titles: Sequence[str] = ("",),
         scatter: bool = False) -> str:
    """Save one panel per entry of lines ([M, P, 2] polylines or [M, 2] points when scatter) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(vis_dir, exist_ok=True)
    fig, axes = plt.subplots(1, len(lines), figsize=(4 * len(lines), 4), squeeze=False)
    for ax, data, title in zip(axes[0], lines, titles):
        if scatter:
            ax.scatter(data[:, 0], data[:, 1], s=2)
        else:
            for line in data:
                ax.plot(line[:, 0], line[:, 1], linewidth=1)
        ax.set_title(title)
        ax.set_aspect("equal", adjustable="datalim")
    path = os.path.join(vis_dir, name)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run(main_fn, description: str, argv: Optional[List[str]] = None) -> None:
    """Entry point of a script: logging, CLI, and one-line errors for bad input."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(description, argv)
    try:
        main_fn(args)
    except KMeansInputError as e:
        sys.exit("%s: %s: %s" % (description.split(":")[0], args.info_path, e))
