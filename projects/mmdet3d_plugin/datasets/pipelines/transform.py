"""Depth targets, GT filters, image normalisation and the final packing into model inputs."""
from typing import Dict, List, Sequence, Union

import mmcv
import numpy as np
from mmcv.parallel import DataContainer as DC
from mmdet.datasets.builder import PIPELINES
from mmdet.datasets.pipelines import to_tensor

# keys that hold one row per GT box and must be filtered together with the boxes
INSTANCE_KEYS = (
    "gt_bboxes_3d",
    "gt_labels_3d",
    "gt_names",
    "instance_inds",
    "gt_agent_fut_trajs",
    "gt_agent_fut_masks",
)


def filter_instances(results: Dict, mask: np.ndarray) -> Dict:
    """Keep the GT boxes where ``mask`` [A] is True, in every per-box key present."""
    for key in INSTANCE_KEYS:
        if key in results:
            results[key] = np.asarray(results[key])[mask]
    return results


@PIPELINES.register_module()
class MultiScaleDepthMapGenerator:
    """Sparse depth targets: lidar points projected into each (augmented) view, nearest point wins.

    Args:
        downsample: one stride or a list of strides (upstream: [4, 8, 16]).
        max_depth: depths are clipped to [0.1, max_depth] meters.

    Reads ``points`` [P, >=3] (lidar frame), ``lidar2img`` (N x [4, 4]) and ``img_shape`` (N x (H, W)).
    Adds ``gt_depth``: one float32 [N, H // s, W // s] array per stride, -1 where no point falls;
    a point lands on pixel (floor(round(v) / s), floor(round(u) / s)) if depth >= 0.1 and the
    rounded pixel is inside the image.
    """

    def __init__(self, downsample: Union[int, Sequence[int]] = 1, max_depth: float = 60) -> None:
        self.downsample: List[int] = list(downsample) if isinstance(downsample, (list, tuple)) else [downsample]
        self.max_depth = max_depth

    def __call__(self, results: Dict) -> Dict:
        xyz = np.asarray(results["points"])[:, :3].astype(np.float64)
        maps: List[List[np.ndarray]] = [[] for _ in self.downsample]
        for i, lidar2img in enumerate(results["lidar2img"]):
            height, width = results["img_shape"][i][:2]
            cam = xyz @ lidar2img[:3, :3].T + lidar2img[:3, 3]
            depth = cam[:, 2]
            front = depth >= 0.1
            cam, depth = cam[front], depth[front]
            u = np.round(cam[:, 0] / depth).astype(np.int64)
            v = np.round(cam[:, 1] / depth).astype(np.int64)
            inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
            u, v = u[inside], v[inside]
            depth = np.clip(depth[inside], 0.1, self.max_depth)
            near_first = np.argsort(depth, kind="stable")
            u, v, depth = u[near_first], v[near_first], depth[near_first]
            for level, stride in enumerate(self.downsample):
                h, w = int(height / stride), int(width / stride)
                us, vs = u // stride, v // stride
                keep = (us < w) & (vs < h)
                flat = vs[keep] * w + us[keep]
                # np.unique returns the first (= nearest) point of every pixel
                pixels, first = np.unique(flat, return_index=True)
                depth_map = np.full(h * w, -1.0, dtype=np.float32)
                depth_map[pixels] = depth[keep][first]
                maps[level].append(depth_map.reshape(h, w))
        results["gt_depth"] = [np.stack(level) for level in maps]
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(downsample={self.downsample}, max_depth={self.max_depth})"


@PIPELINES.register_module()
class NuScenesSparse4DAdaptor:
    """Pack a sample into the tensors and DataContainers SparseDrive's detector reads.

    Adds ``projection_mat`` float32 [N, 4, 4] (= stacked ``lidar2img``), ``image_wh`` float32 [N, 2],
    ``T_global`` = ``lidar2global`` and ``T_global_inv`` (float64 [4, 4]), ``cam_intrinsic`` float32
    [N, 3, 3], ``focal`` float32 [N] (fx), ``instance_id`` (= ``instance_inds``). Wraps ``img`` as a
    stacked DC [N, 3, H, W], ``gt_bboxes_3d`` (yaw wrapped into [-pi, pi)) / ``gt_labels_3d`` as
    per-sample DCs, map and agent-trajectory targets as unstacked DCs, ego targets and
    ``ego_status`` as stacked DCs.
    """

    UNSTACKED_KEYS = ("gt_map_labels", "gt_map_pts", "gt_agent_fut_trajs", "gt_agent_fut_masks")
    STACKED_KEYS = ("gt_ego_fut_trajs", "gt_ego_fut_masks", "gt_ego_fut_cmd", "ego_status")

    def __call__(self, results: Dict) -> Dict:
        results["projection_mat"] = np.stack(results["lidar2img"]).astype(np.float32)
        shapes = np.array([shape[:2] for shape in results["img_shape"]], dtype=np.float32)
        results["image_wh"] = np.ascontiguousarray(shapes[:, ::-1])
        results["T_global"] = results["lidar2global"]
        results["T_global_inv"] = np.linalg.inv(results["lidar2global"])
        if "cam_intrinsic" in results:
            results["cam_intrinsic"] = np.stack(results["cam_intrinsic"]).astype(np.float32)
            results["focal"] = results["cam_intrinsic"][:, 0, 0]
        if "instance_inds" in results:
            results["instance_id"] = results["instance_inds"]
        if "gt_bboxes_3d" in results:
            boxes = np.array(results["gt_bboxes_3d"], dtype=np.float64)
            boxes[:, 6] = self.limit_period(boxes[:, 6], offset=0.5, period=2 * np.pi)
            results["gt_bboxes_3d"] = DC(to_tensor(boxes).float())
        if "gt_labels_3d" in results:
            results["gt_labels_3d"] = DC(to_tensor(np.asarray(results["gt_labels_3d"])).long())
        if "img" in results:
            imgs = np.ascontiguousarray(np.stack([img.transpose(2, 0, 1) for img in results["img"]]))
            results["img"] = DC(to_tensor(imgs), stack=True)
        for key in self.UNSTACKED_KEYS:
            if key in results:
                results[key] = DC(to_tensor(results[key]), stack=False, cpu_only=False)
        for key in self.STACKED_KEYS:
            if key in results:
                results[key] = DC(to_tensor(results[key]), stack=True, cpu_only=False, pad_dims=None)
        return results

    @staticmethod
    def limit_period(val: np.ndarray, offset: float = 0.5, period: float = np.pi) -> np.ndarray:
        """Wrap ``val`` into [-offset * period, (1 - offset) * period)."""
        return val - np.floor(val / period + offset) * period


@PIPELINES.register_module()
class InstanceNameFilter:
    """Drop GT boxes whose label is not one of ``classes`` (label -1 = unmapped category).

    Args:
        classes: the training class names; labels 0 .. len(classes) - 1 are kept.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)

    def __call__(self, results: Dict) -> Dict:
        labels = np.asarray(results["gt_labels_3d"])
        return filter_instances(results, (labels >= 0) & (labels < len(self.classes)))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(classes={self.classes})"


@PIPELINES.register_module()
class CircleObjectRangeFilter:
    """Keep a GT box iff its label l >= 0 and its BEV distance sqrt(x^2 + y^2) <= class_dist_thred[l].

    Args:
        class_dist_thred: per-class radius in meters, in class order (upstream configs: [55] * 10).
    """

    def __init__(
        self, class_dist_thred: Sequence[float] = (52.5,) * 5 + (31.5,) + (42,) * 3 + (31.5,)
    ) -> None:
        self.class_dist_thred = list(class_dist_thred)

    def __call__(self, results: Dict) -> Dict:
        boxes = np.asarray(results["gt_bboxes_3d"])
        labels = np.asarray(results["gt_labels_3d"])
        dist = np.sqrt(np.sum(boxes[:, :2] ** 2, axis=-1))
        thresholds = np.asarray(self.class_dist_thred, dtype=np.float64)
        known = (labels >= 0) & (labels < len(thresholds))
        mask = np.zeros(len(labels), dtype=bool)
        mask[known] = dist[known] <= thresholds[labels[known]]
        return filter_instances(results, mask)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(class_dist_thred={self.class_dist_thred})"


@PIPELINES.register_module()
class NormalizeMultiviewImage:
    """Per view: optional BGR->RGB, then (img - mean) / std (mmcv.imnormalize); records ``img_norm_cfg``.

    Args:
        mean: per-channel mean, in the output channel order.
        std: per-channel standard deviation.
        to_rgb: convert BGR input to RGB first.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_rgb: bool = True) -> None:
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self.to_rgb = to_rgb

    def __call__(self, results: Dict) -> Dict:
        results["img"] = [mmcv.imnormalize(img, self.mean, self.std, self.to_rgb) for img in results["img"]]
        results["img_norm_cfg"] = dict(mean=self.mean, std=self.std, to_rgb=self.to_rgb)
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(mean={self.mean}, std={self.std}, to_rgb={self.to_rgb})"
