"""nuScenes key frames for SparseDrive: info pkl -> per-sample dict (cameras, poses, GT) -> pipeline."""
import logging
import math
import os
import pickle
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import pyquaternion
from mmdet.datasets import DATASETS
from mmdet.datasets.pipelines import Compose
from shapely.geometry import LineString
from torch.utils.data import Dataset

_logger = logging.getLogger(__name__)


def pose_matrix(rotation: Sequence[float], translation: Sequence[float]) -> np.ndarray:
    """4x4 transform from a (w, x, y, z) quaternion and a translation."""
    mat = np.eye(4)
    mat[:3, :3] = pyquaternion.Quaternion(rotation).rotation_matrix
    mat[:3, 3] = np.asarray(translation, dtype=np.float64)
    return mat


def get_T_global(info: Mapping) -> np.ndarray:
    """lidar2global = ego2global @ lidar2ego of one info dict, [4, 4] float64."""
    lidar2ego = pose_matrix(info["lidar2ego_rotation"], info["lidar2ego_translation"])
    ego2global = pose_matrix(info["ego2global_rotation"], info["ego2global_translation"])
    return ego2global @ lidar2ego


def lidar2cam_matrix(cam_info: Mapping) -> np.ndarray:
    """lidar -> camera 4x4 (column-vector convention) from ``sensor2lidar_rotation/translation``."""
    rot = np.linalg.inv(cam_info["sensor2lidar_rotation"])
    mat = np.eye(4)
    mat[:3, :3] = rot
    mat[:3, 3] = -rot @ np.asarray(cam_info["sensor2lidar_translation"], dtype=np.float64)
    return mat


@DATASETS.register_module()
class NuScenes3DDataset(Dataset):
    """nuScenes key frames sorted by time; each item is one sample through ``pipeline``.

    Args:
        ann_file: info pkl ``{infos: [...], metadata: {version}}`` from tools/data_converter.
        pipeline: list of pipeline step configs.
        data_root: nuScenes root (used by the nuScenes evaluators only).
        classes: detection class names (label = position); default :attr:`CLASSES`.
        map_classes: map class names; default :attr:`MAP_CLASSES`.
        load_interval: keep every n-th info after sorting.
        with_velocity: append (vx, vy) to the GT boxes.
        modality: sensor flags; ``use_camera`` adds image paths and projection matrices.
        test_mode: deterministic (centre-crop) augmentation.
        det3d_eval_version / track3d_eval_version: nuScenes eval config names.
        version: nuScenes version; replaced by the pkl's ``metadata['version']``.
        use_valid_flag: GT mask from ``valid_flag`` (lidar + radar points > 0) instead of upstream's
            effective rule ``num_lidar_pts > 0`` (radar-only boxes dropped).
        vis_score_threshold: score threshold for visualisation.
        data_aug_conf: image augmentation ranges (see :meth:`get_augmentation`); None disables it.
        sequences_split_num: split each scene into this many groups (-1 or 'all': one frame each).
        with_seq_flag: compute ``flag`` (sequence group id per sample) for the group samplers.
        keep_consistent_seq_aug: one aug config per sequence group (read by the sampler).
        work_dir: where ``evaluate`` writes results (set by tools/train.py and tools/test.py).
        eval_config: dataset config used by map / planning evaluation to load GT.
        seq_split_by_scene: start sequences at scene-token changes; False (default) keeps
            upstream's rule (a frame with no lidar sweeps starts a sequence).
    """

    CLASSES = (
        "car",
        "truck",
        "trailer",
        "bus",
        "construction_vehicle",
        "bicycle",
        "motorcycle",
        "pedestrian",
        "traffic_cone",
        "barrier",
    )
    MAP_CLASSES = ("ped_crossing", "divider", "boundary")
    # ``evaluate(metric=...)`` / ``tools/test.py --eval`` names: upstream's 'bbox' runs every group the
    # config's eval_mode enables; a group name runs only that group (the eval_mode flags it sets).
    EVAL_METRICS = {
        "bbox": (),
        "det": ("with_det",),
        "tracking": ("with_det", "with_tracking"),
        "map": ("with_map",),
        "motion": ("with_motion",),
        "planning": ("with_planning",),
    }

    def __init__(
        self,
        ann_file: str,
        pipeline: Optional[List[Dict]] = None,
        data_root: Optional[str] = None,
        classes: Optional[Sequence[str]] = None,
        map_classes: Optional[Sequence[str]] = None,
        load_interval: int = 1,
        with_velocity: bool = True,
        modality: Optional[Dict] = None,
        test_mode: bool = False,
        det3d_eval_version: str = "detection_cvpr_2019",
        track3d_eval_version: str = "tracking_nips_2019",
        version: str = "v1.0-trainval",
        use_valid_flag: bool = False,
        vis_score_threshold: float = 0.25,
        data_aug_conf: Optional[Dict] = None,
        sequences_split_num: Union[int, str] = 1,
        with_seq_flag: bool = False,
        keep_consistent_seq_aug: bool = True,
        work_dir: Optional[str] = None,
        eval_config: Optional[Dict] = None,
        seq_split_by_scene: bool = False,
    ) -> None:
        super().__init__()
        self.version = version
        self.load_interval = load_interval
        self.use_valid_flag = use_valid_flag
        self.data_root = data_root
        self.ann_file = ann_file
        self.test_mode = test_mode
        self.box_mode_3d = 0
        if classes is not None:
            self.CLASSES = tuple(classes)
        if map_classes is not None:
            self.MAP_CLASSES = tuple(map_classes)
        self.cat2id = {name: i for i, name in enumerate(self.CLASSES)}
        self.data_infos = self.load_annotations(ann_file)
        self.pipeline = Compose(pipeline) if pipeline is not None else None
        self.with_velocity = with_velocity
        self.det3d_eval_version = det3d_eval_version
        self.track3d_eval_version = track3d_eval_version
        self.modality = modality or dict(
            use_camera=False, use_lidar=True, use_radar=False, use_map=False, use_external=False
        )
        self.vis_score_threshold = vis_score_threshold
        self.data_aug_conf = data_aug_conf
        self.sequences_split_num = sequences_split_num
        self.keep_consistent_seq_aug = keep_consistent_seq_aug
        self.seq_split_by_scene = seq_split_by_scene
        if with_seq_flag:
            self._set_sequence_group_flag()
        self.work_dir = work_dir
        self.eval_config = eval_config

    def __len__(self) -> int:
        return len(self.data_infos)

    def load_annotations(self, ann_file: str) -> List[Dict]:
        """Load the pkl, sort infos by timestamp, keep every ``load_interval``-th; sets ``version``."""
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(
                f"NuScenes3DDataset: info pkl {ann_file} does not exist (looked at {os.path.abspath(ann_file)}; "
                "relative paths start from the current directory); run `sh test/preprocess.sh` from the "
                "repository root."
            )
        try:
            data = mmcv.load(ann_file, file_format="pkl")
        except (EOFError, pickle.UnpicklingError, ValueError, AttributeError, ImportError, IndexError) as exc:
            raise OSError(
                f"NuScenes3DDataset: info pkl {ann_file} cannot be read ({type(exc).__name__}: {exc}; empty or "
                "truncated?); recreate it with `sh test/preprocess.sh`."
            ) from exc
        if not isinstance(data, dict) or "infos" not in data or "metadata" not in data:
            raise OSError(
                f"NuScenes3DDataset: {ann_file} is not an info pkl ({{infos, metadata}}); "
                "create it with tools/data_converter/nuscenes_converter.py."
            )
        infos = sorted(data["infos"], key=lambda info: info["timestamp"])[:: self.load_interval]
        self.metadata = data["metadata"]
        self.version = self.metadata["version"]
        _logger.info("loaded %d infos from %s (version %s)", len(infos), ann_file, self.version)
        return infos

    def _set_sequence_group_flag(self) -> None:
        """``flag[i]`` = sequence group of sample i (consecutive samples of one scene chunk)."""
        num = len(self.data_infos)
        if self.sequences_split_num in (-1, "all"):
            self.flag = np.arange(num, dtype=np.int64)
            return
        if self.seq_split_by_scene:
            starts = [i > 0 and info["scene_token"] != self.data_infos[i - 1]["scene_token"]
                      for i, info in enumerate(self.data_infos)]
        else:
            # upstream: the first key frame of a scene has no earlier lidar sweep
            starts = [i > 0 and len(info["sweeps"]) == 0 for i, info in enumerate(self.data_infos)]
        flag = np.cumsum(starts).astype(np.int64)
        split = int(self.sequences_split_num)
        if split > 1:
            new_flag = np.empty_like(flag)
            group = 0
            for sequence, length in enumerate(np.bincount(flag)):
                chunk = math.ceil(length / split)
                members = np.flatnonzero(flag == sequence)
                for offset in range(0, length, chunk):
                    new_flag[members[offset : offset + chunk]] = group
                    group += 1
            if group != split * (flag.max() + 1):
                raise ValueError(
                    f"NuScenes3DDataset: sequences_split_num={split} gives {group} groups for "
                    f"{flag.max() + 1} sequences (a sequence is shorter than the split); lower it."
                )
            flag = new_flag
        self.flag = flag

    def get_augmentation(self, rng: Optional[np.random.RandomState] = None) -> Optional[Dict]:
        """Draw one image/BEV aug config (shared by all views of a frame); None without data_aug_conf.

        Train: resize ~ U(resize_lim), bottom crop (bot_pct_lim), uniform horizontal crop offset,
        flip with p = 0.5 if rand_flip, rotate ~ U(rot_lim) degrees, rotate_3d ~ U(rot3d_range) rad.
        Test: resize max(fH / H, fW / W), centred crop, no flip or rotation.

        Args:
            rng: random source; numpy's global RNG when None (upstream behaviour).
        """
        conf = self.data_aug_conf
        if conf is None:
            return None
        rng = np.random if rng is None else rng
        height, width = conf["H"], conf["W"]
        final_h, final_w = conf["final_dim"]
        if not self.test_mode:
            resize = rng.uniform(*conf["resize_lim"])
            new_w, new_h = int(width * resize), int(height * resize)
            crop_h = int((1 - rng.uniform(*conf["bot_pct_lim"])) * new_h) - final_h
            crop_w = int(rng.uniform(0, max(0, new_w - final_w)))
            flip = bool(conf["rand_flip"] and rng.choice([0, 1]))
            rotate = rng.uniform(*conf["rot_lim"])
            rotate_3d = rng.uniform(*conf["rot3d_range"])
        else:
            resize = max(final_h / height, final_w / width)
            new_w, new_h = int(width * resize), int(height * resize)
            crop_h = int((1 - np.mean(conf["bot_pct_lim"])) * new_h) - final_h
            crop_w = int(max(0, new_w - final_w) / 2)
            flip, rotate, rotate_3d = False, 0, 0
        return dict(
            resize=resize,
            resize_dims=(new_w, new_h),
            crop=(crop_w, crop_h, crop_w + final_w, crop_h + final_h),
            flip=flip,
            rotate=rotate,
            rotate_3d=rotate_3d,
        )

    def __getitem__(self, idx: Union[int, Dict]) -> Dict:
        """``idx`` is an int (a fresh aug config is drawn) or ``{'idx', 'aug_config'}`` from a sampler."""
        if isinstance(idx, dict):
            aug_config = idx["aug_config"]
            idx = idx["idx"]
        else:
            aug_config = self.get_augmentation()
        data = self.get_data_info(idx)
        data["aug_config"] = aug_config
        return self.pipeline(data)

    def get_cat_ids(self, idx: int) -> List[int]:
        """Class ids present in sample ``idx``."""
        info = self.data_infos[idx]
        names = info["gt_names"][info["valid_flag"]] if self.use_valid_flag else info["gt_names"]
        return [self.cat2id[name] for name in set(names) if name in self.cat2id]

    @staticmethod
    def anno2geom(annos: Mapping[int, Sequence[np.ndarray]]) -> Dict[int, List[LineString]]:
        """label -> list of shapely LineStrings from label -> list of [Ni, 2] vertex arrays."""
        return {label: [LineString(points) for points in lines] for label, lines in annos.items()}

    def get_data_info(self, index: int) -> Dict:
        """The raw sample dict the pipeline starts from (keys documented in docs / spec section 4.5)."""
        info = self.data_infos[index]
        data = dict(
            token=info["token"],
            map_location=info["map_location"],
            pts_filename=info["lidar_path"],
            sweeps=info["sweeps"],
            timestamp=info["timestamp"] / 1e6,
            lidar2ego_translation=info["lidar2ego_translation"],
            lidar2ego_rotation=info["lidar2ego_rotation"],
            ego2global_translation=info["ego2global_translation"],
            ego2global_rotation=info["ego2global_rotation"],
            map_infos=info["map_annos"],
            lidar2global=get_T_global(info),
            map_geoms=self.anno2geom(info["map_annos"]),
        )
        if "ego_status" in info:
            data["ego_status"] = np.asarray(info["ego_status"], dtype=np.float32)
        if self.modality["use_camera"]:
            data.update(self._camera_info(info))
        data.update(self.get_ann_info(index))
        return data

    @staticmethod
    def _camera_info(info: Mapping) -> Dict:
        paths, lidar2img, lidar2cam, intrinsics = [], [], [], []
        for cam_info in info["cams"].values():
            paths.append(cam_info["data_path"])
            intrinsic = np.array(cam_info["cam_intrinsic"], dtype=np.float64)
            to_cam = lidar2cam_matrix(cam_info)
            viewpad = np.eye(4)
            viewpad[: intrinsic.shape[0], : intrinsic.shape[1]] = intrinsic
            lidar2img.append(viewpad @ to_cam)
            # upstream stored this transposed (row-vector form); nothing downstream reads it
            lidar2cam.append(to_cam)
            intrinsics.append(intrinsic)
        return dict(img_filename=paths, lidar2img=lidar2img, lidar2cam=lidar2cam, cam_intrinsic=intrinsics)

    def _gt_mask(self, info: Mapping) -> np.ndarray:
        return np.asarray(info["valid_flag"] if self.use_valid_flag else info["num_lidar_pts"] > 0, dtype=bool)

    def get_ann_info(self, index: int) -> Dict:
        """GT of sample ``index``; empty when the info has no annotations (test split).

        Returns ``gt_bboxes_3d`` [A, 9] (x, y, z, l, w, h, yaw, vx, vy; NaN velocity -> 0),
        ``gt_labels_3d`` int64 [A] (-1 for non-class names), ``gt_names`` [A], ``instance_inds``
        int64 [A], ``gt_agent_fut_trajs`` [A, 12, 2], ``gt_agent_fut_masks`` [A, 12],
        ``gt_ego_fut_trajs`` [6, 2], ``gt_ego_fut_masks`` [6], ``gt_ego_fut_cmd`` [3] and
        ``fut_boxes``: future key frames' boxes [Mi, 7] moved into this lidar frame (planning eval).
        """
        info = self.data_infos[index]
        if "gt_boxes" not in info:
            return {}
        mask = self._gt_mask(info)
        boxes = np.asarray(info["gt_boxes"])[mask]
        names = np.asarray(info["gt_names"])[mask]
        labels = np.array([self.cat2id.get(name, -1) for name in names], dtype=np.int64)
        if self.with_velocity:
            velocity = np.array(info["gt_velocity"], dtype=np.float64)[mask]
            velocity[np.isnan(velocity[:, 0])] = 0.0
            boxes = np.concatenate([boxes, velocity], axis=-1)
        anns = dict(gt_bboxes_3d=boxes, gt_labels_3d=labels, gt_names=names)
        if "instance_inds" in info:
            anns["instance_inds"] = np.asarray(info["instance_inds"], dtype=np.int64)[mask]
        if "gt_agent_fut_trajs" in info:
            anns["gt_agent_fut_trajs"] = info["gt_agent_fut_trajs"][mask]
            anns["gt_agent_fut_masks"] = info["gt_agent_fut_masks"][mask]
        if "gt_ego_fut_trajs" in info:
            anns["gt_ego_fut_trajs"] = info["gt_ego_fut_trajs"]
            anns["gt_ego_fut_masks"] = info["gt_ego_fut_masks"]
            anns["gt_ego_fut_cmd"] = info["gt_ego_fut_cmd"]
            anns["fut_boxes"] = self._future_boxes(index)
        return anns

    def _future_boxes(self, index: int) -> List[np.ndarray]:
        """Boxes [Mi, 7] of the next sum(gt_ego_fut_masks) samples of the same scene, in this lidar frame.

        Upstream behaviour kept: ``index + i`` in the sorted list, all categories with a lidar point.
        """
        info = self.data_infos[index]
        cur_inv = np.linalg.inv(get_T_global(info))
        out = []
        for step in range(1, int(np.sum(info["gt_ego_fut_masks"])) + 1):
            if index + step >= len(self.data_infos):
                break
            fut = self.data_infos[index + step]
            if fut["scene_token"] != info["scene_token"]:
                break
            boxes = np.array(fut["gt_boxes"], dtype=np.float64)[self._gt_mask(fut)]
            fut2cur = cur_inv @ get_T_global(fut)
            heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], axis=-1) @ fut2cur[:2, :2].T
            boxes[:, :3] = boxes[:, :3] @ fut2cur[:3, :3].T + fut2cur[:3, 3]
            boxes[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
            out.append(boxes)
        return out

    def format_results(
        self, results: List[Dict], jsonfile_prefix: Optional[str] = None, tracking: bool = False
    ) -> Tuple[Dict[str, str], Optional[tempfile.TemporaryDirectory]]:
        """Write the nuScenes detection (or tracking) submission ``<jsonfile_prefix>/results_nusc.json``.

        Returns ``({'img_bbox': path}, tmp_dir)``; ``tmp_dir`` is the temporary folder used when
        ``jsonfile_prefix`` is None (the caller cleans it up), else None.
        """
        from .evaluation.detection.nusc_eval import detection_config, dump_json
        from .evaluation.detection.nusc_format import format_nusc_submission

        tmp_dir = None
        if jsonfile_prefix is None:
            tmp_dir = tempfile.TemporaryDirectory()
            jsonfile_prefix = os.path.join(tmp_dir.name, "results")
        outputs = [result.get("img_bbox", result) for result in results]
        submission = format_nusc_submission(
            outputs,
            self.data_infos,
            self.CLASSES,
            detection_config(self.det3d_eval_version).class_range,
            self.modality,
            tracking=tracking,
        )
        os.makedirs(jsonfile_prefix, exist_ok=True)
        return dict(img_bbox=dump_json(submission, os.path.join(jsonfile_prefix, "results_nusc.json"))), tmp_dir

    def raw_results_name(self) -> str:
        """File name of the raw results dump (upstream's, read by its visualiser)."""
        return "results.pkl" if "trainval" in self.version else "results_mini.pkl"

    @classmethod
    def select_eval_mode(cls, eval_mode: Mapping, metric: Union[None, str, Sequence[str]]) -> Dict:
        """``eval_mode`` narrowed to the groups ``metric`` names; unknown names raise ``ValueError``."""
        names = [] if metric is None else [metric] if isinstance(metric, str) else list(metric)
        unknown = [name for name in names if name not in cls.EVAL_METRICS]
        if unknown:
            raise ValueError(
                f"metric {', '.join(map(repr, unknown))} is not known; use {', '.join(cls.EVAL_METRICS)} "
                "('bbox': every group the config's eval_mode enables)."
            )
        if not names or "bbox" in names:
            return dict(eval_mode)
        selected = {flag for name in names for flag in cls.EVAL_METRICS[name]}
        flags = {flag for flags in cls.EVAL_METRICS.values() for flag in flags}
        return dict(eval_mode, **{flag: flag in selected for flag in flags})

    def evaluate(
        self,
        results: List[Dict],
        eval_mode: Dict,
        metric=None,
        logger=None,
        jsonfile_prefix: Optional[str] = None,
        result_names: Sequence[str] = ("img_bbox",),
        show: bool = False,
        out_dir: Optional[str] = None,
        pipeline: Optional[List[Dict]] = None,
    ) -> Dict[str, float]:
        """Run the metrics selected by ``eval_mode`` (detection, tracking, map, motion, planning).

        As upstream, the raw ``results`` are first dumped to ``<work_dir>/results.pkl``
        (``results_mini.pkl`` for non-trainval versions) when ``work_dir`` is set. Submission JSONs
        and ``metrics.json`` go to ``jsonfile_prefix`` (default ``work_dir``; a temporary folder if
        both are None). ``metric``: None or names of ``EVAL_METRICS`` (a group name narrows eval_mode to
        that group); ``pipeline`` is accepted for mmdet compatibility.
        """
        from .evaluation import evaluate_sparsedrive

        eval_mode = self.select_eval_mode(eval_mode, metric)
        if self.work_dir is not None:
            path = os.path.join(self.work_dir, self.raw_results_name())
            os.makedirs(self.work_dir, exist_ok=True)
            mmcv.dump(results, path)
            _logger.info("raw results written to %s", path)
        if show or out_dir:
            _logger.warning("evaluate: visualisation (show/out_dir) is not part of this port.")
        prefix = jsonfile_prefix if jsonfile_prefix is not None else self.work_dir
        if prefix is not None:
            os.makedirs(prefix, exist_ok=True)
        return evaluate_sparsedrive(
            results,
            self.data_infos,
            eval_mode=eval_mode,
            classes=self.CLASSES,
            map_classes=self.MAP_CLASSES,
            data_root=self.data_root,
            version=self.version,
            jsonfile_prefix=prefix,
            logger=logger,
            modality=self.modality,
            det3d_eval_version=self.det3d_eval_version,
            track3d_eval_version=self.track3d_eval_version,
            use_valid_flag=self.use_valid_flag,
            result_name=result_names[0],
        )
