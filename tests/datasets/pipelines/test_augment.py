"""ResizeCropFlipImage, BBoxRotation and PhotoMetricDistortionMultiViewImage against hand-computed cases."""
import numpy as np
import pytest
from shapely.geometry import LineString

from projects.mmdet3d_plugin.datasets.pipelines.augment import (
    BBoxRotation,
    PhotoMetricDistortionMultiViewImage,
    ResizeCropFlipImage,
    image_aug_matrix,
)

H, W = 90, 160
K = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 45.0], [0.0, 0.0, 1.0]])
# lidar (x right, y forward, z up) -> camera (x right, y down, z forward)
LIDAR2CAM = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])
POINT = np.array([0.3, 2.0, -0.1, 1.0])  # projects to u = 95, v = 50 at depth 2


def lidar2img() -> np.ndarray:
    viewpad = np.eye(4)
    viewpad[:3, :3] = K
    return viewpad @ LIDAR2CAM


def project(mat: np.ndarray, point: np.ndarray = POINT) -> np.ndarray:
    cam = mat @ point
    return cam[:2] / cam[2]


def blob_image(u: float, v: float, half: int = 6) -> np.ndarray:
    """A white square covering [u - half, u + half) x [v - half, v + half) (pixel j spans [j, j + 1))."""
    img = np.zeros((H, W, 3), dtype=np.float32)
    img[int(v) - half : int(v) + half, int(u) - half : int(u) + half] = 255.0
    return img


def blob_centre(img: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre in continuous pixel coordinates (pixel centres at j + 0.5)."""
    weight = img[..., 0].astype(np.float64)
    vs, us = np.mgrid[: img.shape[0], : img.shape[1]] + 0.5
    return np.array([(us * weight).sum(), (vs * weight).sum()]) / weight.sum()


def test_projection_of_hand_built_camera_is_95_50():
    np.testing.assert_allclose(project(lidar2img()), [95.0, 50.0], err_msg="test camera set-up is wrong")


def test_aug_matrix_resize_crop_flip_by_hand():
    mat = image_aug_matrix(0.5, (10, 20, 90, 60), flip=True, rotate_deg=0.0)
    # u' = 80 - (0.5 u - 10) = 90 - 0.5 u ; v' = 0.5 v - 20
    expected = np.array([[-0.5, 0, 90], [0, 0.5, -20], [0, 0, 1]])
    np.testing.assert_allclose(mat[:3, :3], expected, atol=1e-12, err_msg="resize/crop/flip matrix is wrong")
    np.testing.assert_allclose(mat[3], [0, 0, 0, 1], err_msg="4x4 embedding is wrong")


def test_aug_matrix_rotation_turns_about_crop_centre_counter_clockwise():
    mat = image_aug_matrix(1.0, (0, 0, 80, 40), flip=False, rotate_deg=90.0)
    centre = np.array([40.0, 20.0, 1.0])
    np.testing.assert_allclose(mat[:3, :3] @ centre, centre, atol=1e-9, err_msg="crop centre must stay fixed")
    # one pixel right of the centre ends one pixel above it (counter-clockwise on screen)
    np.testing.assert_allclose(mat[:3, :3] @ [41.0, 20.0, 1.0], [40.0, 19.0, 1.0], atol=1e-9,
                               err_msg="rotation direction differs from PIL's")


@pytest.mark.parametrize(
    "aug",
    [
        dict(resize=0.8, crop=(0, 0, 128, 72), flip=False, rotate=0.0),
        dict(resize=0.8, crop=(20, 10, 120, 70), flip=False, rotate=0.0),
        dict(resize=1.0, crop=(0, 0, 160, 90), flip=True, rotate=0.0),
        dict(resize=1.0, crop=(0, 0, 160, 90), flip=False, rotate=5.4),
        dict(resize=0.9, crop=(30, 15, 130, 75), flip=True, rotate=-5.0),
    ],
    ids=["resize", "resize_crop", "flip", "rotate", "all"],
)
def test_projected_point_stays_on_its_image_content(aug):
    u, v = project(lidar2img())
    results = dict(img=[blob_image(u, v)], lidar2img=[lidar2img()], cam_intrinsic=[K.copy()], aug_config=aug)
    out = ResizeCropFlipImage()(results)
    new_u, new_v = project(out["lidar2img"][0])
    centre = blob_centre(out["img"][0])
    crop_w, crop_h = aug["crop"][2] - aug["crop"][0], aug["crop"][3] - aug["crop"][1]
    assert out["img"][0].shape == (crop_h, crop_w, 3), f"image shape {out['img'][0].shape} != crop size"
    assert out["img"][0].dtype == np.float32, "augmented image must stay float32"
    assert out["img_shape"] == [(crop_h, crop_w)], f"img_shape {out['img_shape']} not updated"
    assert np.hypot(new_u - centre[0], new_v - centre[1]) < 0.1, (
        f"point projects to ({new_u:.2f}, {new_v:.2f}) but its blob is at {centre.round(2)}"
    )


def test_intrinsic_is_scaled_by_resize_only():
    aug = dict(resize=0.5, crop=(10, 5, 70, 40), flip=True, rotate=3.0)
    out = ResizeCropFlipImage()(dict(img=[blob_image(95, 50)], lidar2img=[lidar2img()], cam_intrinsic=[K.copy()],
                                     aug_config=aug))
    np.testing.assert_allclose(out["cam_intrinsic"][0], K * 0.5, err_msg="upstream scales the whole 3x3 by resize")


def test_without_aug_config_nothing_changes():
    img = blob_image(95, 50)
    results = dict(img=[img], lidar2img=[lidar2img()], aug_config=None)
    out = ResizeCropFlipImage()(results)
    assert out["img"][0] is img and np.array_equal(out["lidar2img"][0], lidar2img()), "no aug must be a no-op"


def test_bbox_rotation_by_quarter_turn():
    boxes = np.array([[10.0, 0.0, 1.0, 4.0, 2.0, 1.5, 0.0, 1.0, 0.0]])
    results = dict(
        aug_config=dict(rotate_3d=np.pi / 2),
        lidar2img=[lidar2img()],
        lidar2global=np.eye(4),
        gt_bboxes_3d=boxes.copy(),
    )
    out = BBoxRotation()(results)
    np.testing.assert_allclose(out["gt_bboxes_3d"][0], [0, 10, 1, 4, 2, 1.5, np.pi / 2, 0, 1], atol=1e-12,
                               err_msg="centre, yaw and velocity must turn by +90 deg")
    rotated_point = np.array([-POINT[1], POINT[0], POINT[2], 1.0])
    np.testing.assert_allclose(project(out["lidar2img"][0], rotated_point), project(lidar2img()), atol=1e-9,
                               err_msg="a rotated point must land on the same pixel")
    np.testing.assert_allclose(out["lidar2global"] @ rotated_point, POINT, atol=1e-12,
                               err_msg="lidar2global must undo the BEV rotation")


def test_bbox_rotation_leaves_trajectories_and_map_unless_asked():
    line = LineString([(1.0, 0.0), (2.0, 0.0)])

    def make():
        return dict(
            aug_config=dict(rotate_3d=np.pi / 2), lidar2img=[np.eye(4)], gt_bboxes_3d=np.zeros((0, 9)),
            gt_agent_fut_trajs=np.array([[[1.0, 0.0]]]), gt_ego_fut_trajs=np.array([[1.0, 0.0]]),
            map_geoms={1: [line]},
        )

    kept = BBoxRotation()(make())
    np.testing.assert_allclose(kept["gt_agent_fut_trajs"], [[[1.0, 0.0]]], err_msg="upstream does not rotate trajs")
    turned = BBoxRotation(rotate_all_gt=True)(make())
    np.testing.assert_allclose(turned["gt_agent_fut_trajs"], [[[0.0, 1.0]]], atol=1e-12, err_msg="agent trajs")
    np.testing.assert_allclose(turned["gt_ego_fut_trajs"], [[0.0, 1.0]], atol=1e-12, err_msg="ego traj")
    np.testing.assert_allclose(np.array(turned["map_geoms"][1][0].coords), [[0, 1], [0, 2]], atol=1e-12,
                               err_msg="map polylines must turn about the lidar origin")


class ScriptedRandom:
    """Stands in for numpy.random: coins and draws come from fixed lists."""

    def __init__(self, coins, uniforms, permutation=(0, 1, 2)):
        self.coins, self.uniforms, self.perm = list(coins), list(uniforms), permutation

    def randint(self, n):
        return self.coins.pop(0)

    def uniform(self, low, high):
        return self.uniforms.pop(0)

    def permutation(self, n):
        return np.array(self.perm)


def run_distortion(monkeypatch, img, coins, uniforms, permutation=(0, 1, 2)):
    script = ScriptedRandom(coins, uniforms, permutation)
    for name in ("randint", "uniform", "permutation"):
        monkeypatch.setattr(np.random, name, getattr(script, name))
    out = PhotoMetricDistortionMultiViewImage()(dict(img=[img.copy()]))["img"][0]
    assert not script.coins and not script.uniforms, "distortion consumed a different number of draws"
    return out


def test_photometric_all_coins_zero_is_identity(monkeypatch):
    img = np.random.RandomState(0).uniform(0, 255, (4, 5, 3)).astype(np.float32)
    # brightness, mode (0 = contrast last), saturation, hue, contrast, swap
    out = run_distortion(monkeypatch, img, coins=[0, 0, 0, 0, 0, 0], uniforms=[])
    np.testing.assert_allclose(out, img, atol=1e-3, err_msg="no distortion drawn but image changed")


def test_photometric_brightness_contrast_and_swap(monkeypatch):
    img = np.random.RandomState(1).uniform(50, 200, (4, 5, 3)).astype(np.float32)
    # brightness +10, mode 1 (contrast first) x1.5, no saturation, no hue, channel swap (2, 1, 0)
    out = run_distortion(monkeypatch, img, coins=[1, 1, 1, 0, 0, 1], uniforms=[10.0, 1.5], permutation=(2, 1, 0))
    np.testing.assert_allclose(out, ((img + 10.0) * 1.5)[..., ::-1], rtol=1e-4,
                               err_msg="brightness, contrast or channel swap is wrong")


def test_photometric_rejects_uint8():
    with pytest.raises(TypeError, match="float32"):
        PhotoMetricDistortionMultiViewImage()(dict(img=[np.zeros((2, 2, 3), np.uint8)]))
