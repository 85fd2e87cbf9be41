"""Loading steps: the six camera images of a key frame and its lidar sweep (for depth targets)."""
import os
from typing import Dict, List, Optional, Sequence, Union

import cv2
import mmcv
import numpy as np
from mmdet.datasets.builder import PIPELINES

# mmcv's imread flag names, mapped onto OpenCV (mmcv reads with OpenCV as well).
_COLOR_FLAGS = {
    "color": cv2.IMREAD_COLOR,
    "grayscale": cv2.IMREAD_GRAYSCALE,
    "unchanged": cv2.IMREAD_UNCHANGED,
}


# A JPEG ends with the EOI marker, a PNG with its IEND chunk. libjpeg decodes a cut-off JPEG with only a
# "Premature end of JPEG file" warning on stderr, so the end is checked before decoding (no cost to speak of).
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def truncation(data: bytes) -> Optional[str]:
    """Why the JPEG / PNG bytes ``data`` are incomplete (empty, no end marker), or None when they look whole.

    Other formats are left to the decoder. Trailing zero padding after the end marker is accepted.
    """
    if not data:
        return "empty file"
    tail = data.rstrip(b"\x00")
    if data.startswith(_JPEG_START) and not tail.endswith(_JPEG_END):
        return "truncated JPEG: no end-of-image marker"
    if data.startswith(_PNG_START) and not tail.endswith(_PNG_END):
        return "truncated PNG: no IEND chunk"
    return None


@PIPELINES.register_module()
class LoadMultiViewImageFromFiles:
    """Read every camera image of a sample (BGR, as stored) into a list of arrays.

    Args:
        to_float32: cast the images to float32 (the train/test pipelines do).
        color_type: ``'unchanged'`` (default), ``'color'`` or ``'grayscale'``.

    Reads ``results['img_filename']`` (N paths) and adds ``img`` (list of N [H, W, 3] arrays),
    ``filename``, ``img_shape`` / ``ori_shape`` / ``pad_shape`` (list of N (H, W, 3) shapes),
    ``scale_factor`` = 1.0 and a neutral ``img_norm_cfg``.
    """

    def __init__(self, to_float32: bool = False, color_type: str = "unchanged") -> None:
        if color_type not in _COLOR_FLAGS:
            raise ValueError(
                f"LoadMultiViewImageFromFiles: color_type={color_type!r}; use one of {sorted(_COLOR_FLAGS)}."
            )
        self.to_float32 = to_float32
        self.color_type = color_type

    def _read(self, path: str, token: str) -> np.ndarray:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"LoadMultiViewImageFromFiles: image {path} of sample {token} does not exist; "
                "check data_root / the info pkl paths or regenerate the data."
            )
        with open(path, "rb") as f:
            data = f.read()
        problem = truncation(data)
        img = None if problem else cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _COLOR_FLAGS[self.color_type])
        if img is None:
            raise OSError(
                f"LoadMultiViewImageFromFiles: image {path} of sample {token} cannot be decoded "
                f"({problem or 'corrupt or not an image'}); re-download or regenerate it."
            )
        return img

    def __call__(self, results: Dict) -> Dict:
        token = results.get("token", "<unknown>")
        imgs = [self._read(path, token) for path in results["img_filename"]]
        if self.to_float32:
            imgs = [img.astype(np.float32) for img in imgs]
        shapes = [img.shape for img in imgs]
        results["filename"] = results["img_filename"]
        results["img"] = imgs
        results["img_shape"] = shapes
        results["ori_shape"] = list(shapes)
        results["pad_shape"] = list(shapes)
        results["scale_factor"] = 1.0
        channels = 1 if imgs[0].ndim < 3 else imgs[0].shape[2]
        results["img_norm_cfg"] = dict(
            mean=np.zeros(channels, dtype=np.float32),
            std=np.ones(channels, dtype=np.float32),
            to_rgb=False,
        )
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(to_float32={self.to_float32}, color_type={self.color_type!r})"


@PIPELINES.register_module()
class LoadPointsFromFile:
    """Load the key-frame lidar points (no sweeps) as a float32 array.

    Args:
        coord_type: ``'LIDAR'``, ``'DEPTH'`` or ``'CAMERA'`` (only recorded; points stay numpy).
        load_dim: floats per point in the file (5 for nuScenes ``.pcd.bin``).
        use_dim: kept columns, an int n meaning the first n.
        shift_height: append the height above the 0.99th-percentile floor as an extra column after xyz.
        use_color: the kept columns include colour (needs at least 6 columns).
        file_client_args: mmcv ``FileClient`` arguments.

    Reads ``results['pts_filename']``; adds ``points`` [P, len(use_dim)] float32.
    """

    def __init__(
        self,
        coord_type: str,
        load_dim: int = 6,
        use_dim: Union[int, Sequence[int]] = (0, 1, 2),
        shift_height: bool = False,
        use_color: bool = False,
        file_client_args: Optional[Dict] = None,
    ) -> None:
        if coord_type not in ("CAMERA", "LIDAR", "DEPTH"):
            raise ValueError(f"LoadPointsFromFile: coord_type={coord_type!r}; use LIDAR, DEPTH or CAMERA.")
        if isinstance(use_dim, int):
            use_dim = list(range(use_dim))
        use_dim = list(use_dim)
        if max(use_dim) >= load_dim:
            raise ValueError(f"LoadPointsFromFile: use_dim={use_dim} needs columns beyond load_dim={load_dim}.")
        if use_color and len(use_dim) < 6:
            raise ValueError(f"LoadPointsFromFile: use_color needs >= 6 columns in use_dim, got {use_dim}.")
        self.coord_type = coord_type
        self.load_dim = load_dim
        self.use_dim: List[int] = use_dim
        self.shift_height = shift_height
        self.use_color = use_color
        self.file_client_args = dict(backend="disk") if file_client_args is None else dict(file_client_args)
        self.file_client = None

    def _load_points(self, path: str, token: str) -> np.ndarray:
        if path.endswith(".npy"):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"LoadPointsFromFile: points file {path} of sample {token} does not exist.")
            return np.load(path).astype(np.float32, copy=False).reshape(-1)
        if self.file_client is None:
            self.file_client = mmcv.FileClient(**self.file_client_args)
        try:
            buffer = self.file_client.get(path)
        except (FileNotFoundError, OSError) as err:
            raise FileNotFoundError(
                f"LoadPointsFromFile: points file {path} of sample {token} cannot be read ({err})."
            ) from err
        return np.frombuffer(buffer, dtype=np.float32)

    def __call__(self, results: Dict) -> Dict:
        path = results["pts_filename"]
        token = results.get("token", "<unknown>")
        flat = self._load_points(path, token)
        if flat.size % self.load_dim:
            raise ValueError(
                f"LoadPointsFromFile: {path} of sample {token} holds {flat.size} floats, "
                f"not a multiple of load_dim={self.load_dim}."
            )
        points = flat.reshape(-1, self.load_dim)[:, self.use_dim]
        if self.shift_height:
            height = points[:, 2:3] - np.percentile(points[:, 2], 0.99)
            points = np.concatenate([points[:, :3], height, points[:, 3:]], axis=1)
        results["points"] = points
        return results

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(coord_type={self.coord_type!r}, load_dim={self.load_dim}, "
            f"use_dim={self.use_dim})"
        )
