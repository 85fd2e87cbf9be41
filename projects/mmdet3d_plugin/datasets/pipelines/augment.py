"""Image and BEV augmentations that keep the lidar-to-image matrices consistent with the pixels."""
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np
from mmdet.datasets.builder import PIPELINES
from PIL import Image
from shapely import affinity

_RESAMPLING = getattr(Image, "Resampling", Image)
_TRANSPOSE = getattr(Image, "Transpose", Image)


def image_aug_matrix(
    resize: float, crop: Sequence[int], flip: bool, rotate_deg: float
) -> np.ndarray:
    """The 4x4 pixel transform of resize -> crop -> horizontal flip -> rotation about the crop centre.

    Args:
        resize: scale factor applied to the original image.
        crop: (x0, y0, x1, y1) crop box in resized pixels.
        flip: mirror u -> (x1 - x0) - u.
        rotate_deg: counter-clockwise rotation (as seen on screen) in degrees, PIL's convention.
    Returns:
        [4, 4] float64, acting on homogeneous (u * d, v * d, d, 1) rows of a lidar2img product.
    """
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    mat = np.eye(3)
    mat[:2, :2] *= resize
    mat[:2, 2] -= np.asarray(crop[:2], dtype=np.float64)
    if flip:
        mat = np.array([[-1.0, 0.0, crop_w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ mat
    angle = rotate_deg / 180 * np.pi
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    centre = np.array([crop_w, crop_h], dtype=np.float64) / 2
    rot[:2, 2] = centre - rot[:2, :2] @ centre
    mat = rot @ mat
    out = np.eye(4)
    out[:3, :3] = mat
    return out


@PIPELINES.register_module()
class ResizeCropFlipImage:
    """Apply the sample's ``aug_config`` (resize, crop, flip, rotate) to every view with PIL.

    Each view is cast to uint8 (truncation) and resized with PIL's default bicubic filter, as
    upstream does, so pixels match upstream training. ``lidar2img[i]`` becomes ``M @ lidar2img[i]``
    with M from :func:`image_aug_matrix`; ``cam_intrinsic[i]`` is only scaled by ``resize``
    (upstream behaviour: the focal length is right, the principal point is not; only the focal
    length is used downstream). ``img_shape`` becomes a list of (fH, fW). Without an
    ``aug_config`` the sample passes through unchanged.
    """

    def __call__(self, results: Dict) -> Dict:
        aug = results.get("aug_config")
        if aug is None:
            return results
        imgs, lidar2img = [], []
        for i, img in enumerate(results["img"]):
            new_img, mat = self._img_transform(np.uint8(img), aug)
            imgs.append(new_img)
            lidar2img.append(mat @ results["lidar2img"][i])
        results["img"] = imgs
        results["lidar2img"] = lidar2img
        if "cam_intrinsic" in results:
            intrinsics = []
            for intrinsic in results["cam_intrinsic"]:
                scaled = np.array(intrinsic, dtype=np.float64)
                scaled[:3, :3] *= aug["resize"]
                intrinsics.append(scaled)
            results["cam_intrinsic"] = intrinsics
        results["img_shape"] = [img.shape[:2] for img in imgs]
        return results

    @staticmethod
    def _img_transform(img: np.ndarray, aug: Dict) -> Tuple[np.ndarray, np.ndarray]:
        height, width = img.shape[:2]
        resize = aug.get("resize", 1)
        # upstream recomputes the size from the actual image, not from aug["resize_dims"]
        size = (int(width * resize), int(height * resize))
        crop = aug.get("crop", (0, 0, *size))
        flip = aug.get("flip", False)
        rotate = aug.get("rotate", 0)
        pil = Image.fromarray(img).resize(size, _RESAMPLING.BICUBIC).crop(tuple(crop))
        if flip:
            pil = pil.transpose(_TRANSPOSE.FLIP_LEFT_RIGHT)
        pil = pil.rotate(rotate, _RESAMPLING.NEAREST)
        return np.asarray(pil, dtype=np.float32), image_aug_matrix(resize, crop, flip, rotate)


def bev_rotation_matrix(angle: float) -> np.ndarray:
    """[4, 4] rotation about the lidar z axis by ``angle`` radians (counter-clockwise seen from above)."""
    cos, sin = np.cos(angle), np.sin(angle)
    mat = np.eye(4)
    mat[:2, :2] = [[cos, -sin], [sin, cos]]
    return mat


@PIPELINES.register_module()
class BBoxRotation:
    """Rotate the BEV scene by ``aug_config['rotate_3d']`` radians about the lidar z axis.

    The scene frame changes, so ``lidar2img`` and ``lidar2global`` get ``@ inv(Rz)``; box centres
    and velocities are rotated and yaw += angle.

    Args:
        rotate_all_gt: upstream rotates only boxes and poses, leaving agent/ego future trajectories
            and map geometries in the unrotated frame (harmless there since ``rot3d_range=[0, 0]``).
            True also rotates ``gt_agent_fut_trajs``, ``gt_ego_fut_trajs`` and ``map_geoms``;
            needed before enabling a non-zero ``rot3d_range``.
    """

    def __init__(self, rotate_all_gt: bool = False) -> None:
        self.rotate_all_gt = rotate_all_gt

    def __call__(self, results: Dict) -> Dict:
        aug = results.get("aug_config")
        if aug is None:
            return results
        angle = float(aug.get("rotate_3d", 0.0))
        rot_inv = np.linalg.inv(bev_rotation_matrix(angle))
        results["lidar2img"] = [mat @ rot_inv for mat in results["lidar2img"]]
        if "lidar2global" in results:
            results["lidar2global"] = results["lidar2global"] @ rot_inv
        if "gt_bboxes_3d" in results:
            results["gt_bboxes_3d"] = self.box_rotate(results["gt_bboxes_3d"], angle)
        if self.rotate_all_gt:
            self._rotate_other_gt(results, angle)
        return results

    @staticmethod
    def box_rotate(bbox_3d: np.ndarray, angle: float) -> np.ndarray:
        """Rotate boxes [A, 7 or 9] (x, y, z, l, w, h, yaw, vx, vy) about z; returns a new array."""
        rot = bev_rotation_matrix(angle)[:3, :3]
        out = np.array(bbox_3d, copy=True)
        out[:, :3] = bbox_3d[:, :3] @ rot.T
        out[:, 6] = bbox_3d[:, 6] + angle
        if out.shape[-1] > 7:
            vel_dims = out.shape[-1] - 7
            out[:, 7:] = bbox_3d[:, 7:] @ rot[:vel_dims, :vel_dims].T
        return out

    @staticmethod
    def _rotate_other_gt(results: Dict, angle: float) -> None:
        rot2d = bev_rotation_matrix(angle)[:2, :2]
        for key in ("gt_agent_fut_trajs", "gt_ego_fut_trajs"):
            if key in results:
                trajs = np.asarray(results[key])
                results[key] = (trajs @ rot2d.T).astype(trajs.dtype)
        if "map_geoms" in results:
            results["map_geoms"] = {
                label: [affinity.rotate(geom, angle, origin=(0, 0), use_radians=True) for geom in geoms]
                for label, geoms in results["map_geoms"].items()
            }


@PIPELINES.register_module()
class PhotoMetricDistortionMultiViewImage:
    """Random brightness, contrast, saturation, hue and channel swap per view, each with p = 0.5.

    Order per view: brightness; contrast first or last (coin); BGR->HSV; saturation; hue (wrapped
    into [0, 360]); HSV->BGR; contrast if last; channel permutation. Values are not clipped.
    Draws come from numpy's global RNG in upstream's order, so a seeded run reproduces upstream.

    Args:
        brightness_delta: additive brightness range (+-).
        contrast_range: multiplicative contrast range.
        saturation_range: multiplicative saturation range.
        hue_delta: additive hue range in degrees (+-).
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: float = 18,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            img *= np.random.uniform(self.contrast_lower, self.contrast_upper)
        return img

    def _distort(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.float32:
            raise TypeError(
                "PhotoMetricDistortionMultiViewImage: images must be float32; "
                "set to_float32=True in LoadMultiViewImageFromFiles."
            )
        if np.random.randint(2):
            img += np.random.uniform(-self.brightness_delta, self.brightness_delta)
        contrast_last = np.random.randint(2) == 0
        if not contrast_last:
            img = self._contrast(img)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        if np.random.randint(2):
            img[..., 1] *= np.random.uniform(self.saturation_lower, self.saturation_upper)
        if np.random.randint(2):
            hue = img[..., 0]
            hue += np.random.uniform(-self.hue_delta, self.hue_delta)
            hue[hue > 360] -= 360
            hue[hue < 0] += 360
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        if contrast_last:
            img = self._contrast(img)
        if np.random.randint(2):
            img = img[..., np.random.permutation(3)]
        return img

    def __call__(self, results: Dict) -> Dict:
        results["img"] = [self._distort(img) for img in results["img"]]
        return results

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(brightness_delta={self.brightness_delta}, "
            f"contrast_range={(self.contrast_lower, self.contrast_upper)}, "
            f"saturation_range={(self.saturation_lower, self.saturation_upper)}, hue_delta={self.hue_delta})"
        )
