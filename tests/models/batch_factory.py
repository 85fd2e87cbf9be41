"""Synthetic SparseDrive batches for model tests: images, camera matrices, metas and ground truth.

Layout matches what the data pipeline + collate hand to ``SparseDrive.forward`` (upstream's
``NuScenesSparse4DAdaptor`` + ``Collect`` keys): tensors batched over samples, per-sample ground truth
as lists, ``img_metas`` a list of dicts with NumPy 4x4 poses.
"""
import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
STAGE1_CONFIG = ROOT / "projects" / "configs" / "sparsedrive_small_stage1.py"
REDUCED_STAGE1_CONFIG = Path(__file__).resolve().parent / "configs" / "sparsedrive_small_stage1_reduced.py"
NUM_DET_CLASSES = 10
NUM_MAP_CLASSES = 3
NUM_MAP_PERMUTATIONS = 38
CAMERA_YAWS_DEG = (90.0, 35.0, 145.0, -90.0, -35.0, -145.0)  # front first (LiDAR y points forward)


def lidar_to_image(image_wh: Tuple[int, int], yaw_deg: float, height: float = 1.6) -> np.ndarray:
    """Projection LiDAR -> pixels of a pinhole camera at ``height`` m looking along ``yaw_deg`` in the xy plane, [4, 4]."""
    width, img_h = image_wh
    yaw = math.radians(yaw_deg)
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    rot = np.stack([right, down, forward])  # rows: camera axes in LiDAR coordinates
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = rot
    extrinsic[:3, 3] = -rot @ np.array([0.0, 0.0, height])
    intrinsic = np.eye(4)
    focal = 0.6 * width
    intrinsic[0, 0] = intrinsic[1, 1] = focal
    intrinsic[0, 2], intrinsic[1, 2] = width / 2, img_h / 2
    return intrinsic @ extrinsic


def ego_pose(frame: int, speed: float = 5.0, dt: float = 0.5) -> np.ndarray:
    """LiDAR -> global transform of a car driving straight along global x and turning slowly, [4, 4]."""
    yaw = 0.02 * frame
    pose = np.eye(4)
    pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    pose[:3, 3] = [100.0 + speed * dt * frame, 50.0, 0.0]
    return pose


def make_boxes(num: int, rng: np.random.Generator) -> np.ndarray:
    """GT boxes [num, 9]: x, y, z, w, l, h (m), yaw, vx, vy in the LiDAR frame."""
    boxes = np.zeros((num, 9), dtype=np.float32)
    boxes[:, 0:2] = rng.uniform(-25, 25, (num, 2))
    boxes[:, 2] = rng.uniform(-1.5, 0.5, num)
    boxes[:, 3:6] = rng.uniform(0.5, 4.5, (num, 3))
    boxes[:, 6] = rng.uniform(-math.pi, math.pi, num)
    boxes[:, 7:9] = rng.uniform(-3, 3, (num, 2))
    return boxes


def make_polylines(num: int, num_sample: int, rng: np.random.Generator) -> np.ndarray:
    """GT map polylines with every equivalent ordering, [num, 38, num_sample, 2] (metres).

    Open polylines: forward, reversed, then 36 copies of 1e5 padding (upstream's VectorizeMap).
    """
    out = np.full((num, NUM_MAP_PERMUTATIONS, num_sample, 2), 1e5, dtype=np.float32)
    for i in range(num):
        start = rng.uniform([-14, -28], [14, 20])
        direction = rng.uniform(-1, 1, 2)
        direction = direction / (np.linalg.norm(direction) + 1e-6)
        t = np.linspace(0, rng.uniform(3, 8), num_sample)[:, None]
        line = np.clip(start + t * direction, [-15, -30], [15, 30])
        out[i, 0] = line
        out[i, 1] = line[::-1]
    return out


def det_anchors(num: int) -> np.ndarray:
    """Box anchors on a grid, [num, 11]: centres, log-size 1, sin 1, cos 0, zero velocity (k-means file layout)."""
    side = int(math.ceil(math.sqrt(num)))
    xs = np.linspace(-40, 40, side)
    grid = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)[:num]
    anchors = np.zeros((num, 11), dtype=np.float32)
    anchors[:, :2] = grid
    anchors[:, 2] = -0.5
    anchors[:, 3:7] = 1.0
    return anchors


def map_anchors(num: int, num_sample: int = 20) -> np.ndarray:
    """Map anchors: 8 m segments parallel to the LiDAR y axis around grid centres, [num, num_sample, 2]."""
    side = int(math.ceil(math.sqrt(num)))
    centres = np.stack(
        np.meshgrid(np.linspace(-12, 12, side), np.linspace(-25, 25, side), indexing="ij"), -1
    ).reshape(-1, 2)[:num]
    offsets = np.linspace(-4, 4, num_sample)
    pts = np.zeros((num, num_sample, 2), dtype=np.float32)
    pts[..., 0] = centres[:, None, 0]
    pts[..., 1] = centres[:, None, 1] + offsets
    return pts


def make_batch(
    batch_size: int = 1,
    image_hw: Tuple[int, int] = (64, 176),
    num_cams: int = 6,
    frame: int = 0,
    num_gt: Sequence[int] = (4,),
    num_map_gt: Sequence[int] = (3,),
    depth_strides: Sequence[int] = (4, 8, 16),
    num_sample: int = 20,
    fut_ts: int = 12,
    ego_fut_ts: int = 6,
    seed: int = 0,
    time_gap: float = 0.0,
) -> Dict[str, object]:
    """A training/test data dict for ``SparseDrive.forward``.

    Args:
        batch_size: B.
        image_hw: (H, W) of the network input.
        num_cams: N (at most 6).
        frame: index of the frame in its sequence (drives timestamp and ego pose).
        num_gt / num_map_gt: objects / map elements per sample (cycled over the batch).
        depth_strides: strides of the depth-supervised levels.
        num_sample: points per map polyline.
        fut_ts / ego_fut_ts: future steps of agents / ego (stage-2 keys).
        seed: RNG seed of the ground truth and images.
        time_gap: extra seconds added to this frame's timestamp (> 2 s looks like a new scene).
    Returns:
        dict with img [B, N, 3, H, W], timestamp [B] (float64, s), projection_mat [B, N, 4, 4],
        image_wh [B, N, 2], focal [B, N], gt_depth (list per stride of [B, N, h, w]), gt_bboxes_3d /
        gt_labels_3d / gt_map_pts / gt_map_labels / gt_agent_fut_trajs / gt_agent_fut_masks (lists per
        sample), gt_ego_fut_trajs [B, T, 2], gt_ego_fut_masks [B, T], gt_ego_fut_cmd [B, 3],
        ego_status [B, 10], img_metas (per sample T_global, T_global_inv, timestamp, instance_id).
    """
    height, width = image_hw
    rng = np.random.default_rng(seed + 1000 * frame)
    gen = torch.Generator().manual_seed(seed + 1000 * frame)
    proj = np.stack([lidar_to_image((width, height), yaw) for yaw in CAMERA_YAWS_DEG[:num_cams]])
    timestamp = 1.0e9 + 0.5 * frame + time_gap
    data = {
        "img": torch.randn(batch_size, num_cams, 3, height, width, generator=gen),
        "timestamp": torch.full((batch_size,), timestamp, dtype=torch.float64),
        "projection_mat": torch.from_numpy(proj).float()[None].repeat(batch_size, 1, 1, 1),
        "image_wh": torch.tensor([width, height], dtype=torch.float32).repeat(batch_size, num_cams, 1),
        "focal": torch.full((batch_size, num_cams), 0.6 * width),
        "gt_depth": [
            _sparse_depth(batch_size, num_cams, height // s, width // s, gen) for s in depth_strides
        ],
    }
    boxes, labels, ids, map_pts, map_labels, agent_trajs, agent_masks, metas = [], [], [], [], [], [], [], []
    pose = ego_pose(frame)
    for b in range(batch_size):
        n = num_gt[b % len(num_gt)]
        m = num_map_gt[b % len(num_map_gt)]
        boxes.append(torch.from_numpy(make_boxes(n, rng)))
        labels.append(torch.from_numpy(rng.integers(0, NUM_DET_CLASSES, n)).long())
        ids.append(np.arange(n) + 100 * b)
        map_pts.append(torch.from_numpy(make_polylines(m, num_sample, rng)))
        map_labels.append(torch.from_numpy(rng.integers(0, NUM_MAP_CLASSES, m)).long())
        agent_trajs.append(torch.from_numpy(rng.uniform(-1, 1, (n, fut_ts, 2)).astype(np.float32)))
        agent_masks.append(torch.ones(n, fut_ts))
        metas.append(
            {
                "T_global": pose,
                "T_global_inv": np.linalg.inv(pose),
                "timestamp": timestamp,
                "instance_id": ids[-1],
            }
        )
    cmd = torch.zeros(batch_size, 3)
    cmd[:, 2] = 1.0
    data.update(
        {
            "gt_bboxes_3d": boxes,
            "gt_labels_3d": labels,
            "gt_map_pts": map_pts,
            "gt_map_labels": map_labels,
            "gt_agent_fut_trajs": agent_trajs,
            "gt_agent_fut_masks": agent_masks,
            "gt_ego_fut_trajs": torch.tensor([0.0, 2.5]).repeat(batch_size, ego_fut_ts, 1),
            "gt_ego_fut_masks": torch.ones(batch_size, ego_fut_ts),
            "gt_ego_fut_cmd": cmd,
            "ego_status": torch.from_numpy(rng.normal(size=(batch_size, 10)).astype(np.float32)),
            "img_metas": metas,
        }
    )
    return data


def _sparse_depth(batch: int, cams: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Depth targets with about 10% valid pixels (metres), 0 elsewhere, [B, N, h, w]."""
    depth = torch.rand(batch, cams, h, w, generator=gen) * 50 + 1
    keep = torch.rand(batch, cams, h, w, generator=gen) < 0.1
    return depth * keep


def inference_data(data: Dict[str, object]) -> Dict[str, object]:
    """The subset of ``data`` the test pipeline provides (no ground truth)."""
    keys = ("img", "timestamp", "projection_mat", "image_wh", "ego_status", "gt_ego_fut_cmd")
    out = {k: data[k] for k in keys}
    out["img_metas"] = [
        {k: meta[k] for k in ("T_global", "T_global_inv", "timestamp")} for meta in data["img_metas"]
    ]
    return out


def load_config(path: Path = REDUCED_STAGE1_CONFIG, full_size_anchors: bool = False):
    """mmcv Config of ``path``; with ``full_size_anchors`` the k-means anchor files are replaced by grids
    of the configured sizes (so the real configs build without data/kmeans)."""
    from mmcv import Config

    cfg = Config.fromfile(str(path))
    if full_size_anchors:
        head = cfg.model.head
        det_bank = head.det_head.instance_bank
        map_bank = head.map_head.instance_bank
        det_bank.anchor = det_anchors(det_bank.num_anchor)
        map_bank.anchor = map_anchors(map_bank.num_anchor)
    return cfg


def build_model(cfg, seed: int = 0):
    """Build ``cfg.model`` with the plugin registered, seeded, and run its init_weights."""
    import projects.mmdet3d_plugin  # noqa: F401  (registers the modules)
    from mmdet.models import build_detector

    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    model.init_weights()
    return model


__all__: List[str] = [
    "load_config",
    "build_model",
    "make_batch",
    "inference_data",
    "det_anchors",
    "map_anchors",
    "lidar_to_image",
    "ego_pose",
]
