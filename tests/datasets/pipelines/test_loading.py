"""Image and point loading, including the one-line errors for missing or corrupt files."""
import cv2
import numpy as np
import pytest

from projects.mmdet3d_plugin.datasets.pipelines.loading import LoadMultiViewImageFromFiles, LoadPointsFromFile


def write_views(tmp_path, count=2):
    paths = []
    for i in range(count):
        img = np.zeros((4, 6, 3), dtype=np.uint8)
        img[..., 0], img[..., 2] = 200, i  # BGR on disk
        path = str(tmp_path / f"view{i}.png")
        cv2.imwrite(path, img)
        paths.append(path)
    return paths


def test_images_load_in_view_order_as_bgr_float32(tmp_path):
    paths = write_views(tmp_path)
    out = LoadMultiViewImageFromFiles(to_float32=True)(dict(img_filename=paths, token="tok"))
    assert len(out["img"]) == 2 and out["img"][0].shape == (4, 6, 3), "one [H, W, 3] array per view"
    assert out["img"][0].dtype == np.float32, "to_float32 ignored"
    assert out["img"][1][0, 0].tolist() == [200.0, 0.0, 1.0], "channels must stay BGR, views in order"
    assert out["img_shape"] == [(4, 6, 3)] * 2 and out["filename"] == paths, "metadata keys"


def test_missing_image_names_file_and_sample(tmp_path):
    paths = write_views(tmp_path) + [str(tmp_path / "gone.jpg")]
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg.*sample tok42"):
        LoadMultiViewImageFromFiles()(dict(img_filename=paths, token="tok42"))


def test_corrupt_image_names_file_and_sample(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(OSError, match=r"bad\.jpg.*sample tok7.*cannot be decoded"):
        LoadMultiViewImageFromFiles()(dict(img_filename=[str(bad)], token="tok7"))


def test_points_load_with_int_use_dim(tmp_path):
    path = str(tmp_path / "pts.bin")
    np.arange(15, dtype=np.float32).tofile(path)
    out = LoadPointsFromFile(coord_type="LIDAR", load_dim=5, use_dim=5)(dict(pts_filename=path))
    np.testing.assert_array_equal(out["points"], np.arange(15, dtype=np.float32).reshape(3, 5), err_msg="points")
    out = LoadPointsFromFile(coord_type="LIDAR", load_dim=5, use_dim=[0, 1, 2])(dict(pts_filename=path))
    assert out["points"].shape == (3, 3), "use_dim list not applied"


def test_points_file_errors(tmp_path):
    path = str(tmp_path / "pts.bin")
    np.arange(7, dtype=np.float32).tofile(path)
    with pytest.raises(ValueError, match="multiple of load_dim=5"):
        LoadPointsFromFile(coord_type="LIDAR", load_dim=5, use_dim=5)(dict(pts_filename=path, token="t"))
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        LoadPointsFromFile(coord_type="LIDAR", load_dim=5, use_dim=5)(
            dict(pts_filename=str(tmp_path / "missing.bin"), token="t")
        )
    with pytest.raises(ValueError, match="use_dim"):
        LoadPointsFromFile(coord_type="LIDAR", load_dim=4, use_dim=5)


def _noise_image(tmp_path, name):
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = str(tmp_path / name)
    cv2.imwrite(path, img)
    return path


@pytest.mark.parametrize("name,kind", [("cut.jpg", "truncated JPEG"), ("cut.png", "truncated PNG")])
def test_truncated_image_names_file_and_sample(tmp_path, name, kind):
    path = _noise_image(tmp_path, name)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    with pytest.raises(OSError, match=rf"{name}.*sample tok9.*{kind}"):
        LoadMultiViewImageFromFiles()(dict(img_filename=[path], token="tok9"))


def test_empty_image_names_file_and_sample(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(OSError, match=r"empty\.jpg.*sample tok3.*empty file"):
        LoadMultiViewImageFromFiles()(dict(img_filename=[str(tmp_path / "empty.jpg")], token="tok3"))


@pytest.mark.parametrize("color_type", ["unchanged", "color", "grayscale"])
def test_whole_images_decode_as_imread_does(tmp_path, color_type):
    paths = [_noise_image(tmp_path, "a.jpg"), _noise_image(tmp_path, "b.png")]
    with open(paths[0], "ab") as f:
        f.write(b"\x00" * 16)  # zero padding after the end marker is accepted
    flag = {"unchanged": cv2.IMREAD_UNCHANGED, "color": cv2.IMREAD_COLOR, "grayscale": cv2.IMREAD_GRAYSCALE}
    out = LoadMultiViewImageFromFiles(color_type=color_type)(dict(img_filename=paths, token="t"))
    for path, img in zip(paths, out["img"]):
        np.testing.assert_array_equal(img, cv2.imread(path, flag[color_type]), err_msg=f"{path} decoded differently")
