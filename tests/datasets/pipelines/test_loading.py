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
