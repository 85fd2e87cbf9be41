"""VectorizeMap on hand-built polylines."""
import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon

from projects.mmdet3d_plugin.datasets.pipelines.vectorize import VectorizeMap

SQUARE = LineString([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)])  # closed, length 4
STRAIGHT = LineString([(0, 0), (0, 19)])  # open, length 19


def test_fixed_num_sampling_is_equal_arc_length():
    vec = VectorizeMap(roi_size=(30, 60), normalize=False, sample_num=20)
    pts = vec.interp_fixed_num(STRAIGHT)
    np.testing.assert_allclose(pts, np.stack([np.zeros(20), np.arange(20.0)], -1), err_msg="1 m spacing expected")
    bent = vec.interp_fixed_num(LineString([(0, 0), (2, 0), (2, 2)]))
    assert bent.shape == (20, 2), f"shape {bent.shape}"
    np.testing.assert_allclose(bent[[0, -1]], [[0, 0], [2, 2]], err_msg="ends must be kept")


def test_fixed_dist_sampling_adds_the_end_point():
    vec = VectorizeMap(roi_size=(30, 60), normalize=False, sample_dist=1.5)
    pts = vec.interp_fixed_dist(LineString([(0, 0), (4, 0)]))
    np.testing.assert_allclose(pts[:, 0], [0, 1.5, 3.0, 4.0], err_msg="points at 0, d, 2d and the end")


def test_permute_open_line_is_itself_its_reverse_and_padding():
    out = VectorizeMap(roi_size=(30, 60), normalize=False, sample_num=20, permute=True).permute_line(
        np.stack([np.zeros(20), np.arange(20.0)], -1)
    )
    assert out.shape == (38, 20, 2), f"shape {out.shape}"
    np.testing.assert_array_equal(out[0, :, 1], np.arange(20.0), err_msg="row 0 is the line")
    np.testing.assert_array_equal(out[1, :, 1], np.arange(20.0)[::-1], err_msg="row 1 is the reversed line")
    assert (out[2:] == 1e5).all(), "rows 2.. must be padding"


def test_permute_closed_square_gives_every_start_and_direction():
    vec = VectorizeMap(roi_size=(30, 60), normalize=False, sample_num=5, permute=True)
    out = vec.permute_line(vec.interp_fixed_num(SQUARE))
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert out.shape == (8, 5, 2), f"shape {out.shape}"
    np.testing.assert_allclose(out[0], np.concatenate([corners, corners[:1]]), atol=1e-12, err_msg="shift 0")
    # np.roll by 1: the last corner comes first
    np.testing.assert_allclose(out[1, :4], corners[[3, 0, 1, 2]], atol=1e-12, err_msg="shift 1")
    np.testing.assert_allclose(out[4, :4], corners[::-1], atol=1e-12, err_msg="reversed, shift 0")
    np.testing.assert_allclose(out[:, 4], out[:, 0], atol=1e-12, err_msg="each ordering must be closed again")


def test_call_with_permute_packs_labels_in_dict_order():
    geoms = {1: [STRAIGHT], 0: [SQUARE], 2: [Polygon([(0, 0), (1, 0), (1, 1)]), STRAIGHT]}
    out = VectorizeMap(roi_size=(30, 60), normalize=False, sample_num=20, permute=True)(dict(map_geoms=geoms))
    np.testing.assert_array_equal(out["gt_map_labels"], [1, 0, 2],
                                  err_msg="labels follow map_geoms order; polygons skipped")
    assert out["gt_map_labels"].dtype == np.int64, "labels must be int64"
    assert out["gt_map_pts"].shape == (3, 38, 20, 2) and out["gt_map_pts"].dtype == np.float32, "gt_map_pts"


def test_call_without_map_geoms_and_without_instances():
    vec = VectorizeMap(roi_size=(30, 60), normalize=False, sample_num=20, permute=True)
    assert "gt_map_pts" not in vec(dict()), "no map_geoms: nothing to add"
    out = vec(dict(map_geoms={0: [], 1: []}))
    assert out["gt_map_pts"].shape == (0, 38, 20, 2) and out["gt_map_labels"].shape == (0,), "empty map"


def test_simplify_mode_returns_cpu_vectors():
    geoms = {1: [LineString([(0, 0), (1, 0.01), (2, 0)])]}
    out = VectorizeMap(roi_size=(30, 60), normalize=False, simplify=True)(dict(map_geoms=geoms))
    assert out["vectors"].cpu_only, "vectors must be a CPU-only DataContainer"
    np.testing.assert_allclose(out["vectors"].data[1][0], [[0, 0], [2, 0]], err_msg="0.2 m simplification")


def test_normalize_maps_roi_to_unit_square():
    vec = VectorizeMap(roi_size=(30, 60), normalize=True, sample_num=2)
    out = vec.normalize_line(np.array([[-15.0, -30.0], [15.0, 30.0]]))
    np.testing.assert_allclose(out, [[0, 0], [30 / (30 + 1e-5), 60 / (60 + 1e-5)]], err_msg="(p + roi/2) / roi")


def test_bad_geometry_and_bad_modes_raise():
    vec = VectorizeMap(roi_size=(30, 60), normalize=False, sample_num=20)
    with pytest.raises(ValueError, match="Point"):
        vec(dict(map_geoms={0: [Point(0, 0)]}))
    with pytest.raises(ValueError):
        VectorizeMap(roi_size=(30, 60), normalize=False)
    with pytest.raises(ValueError):
        VectorizeMap(roi_size=(30, 60), normalize=False, sample_num=20, sample_dist=1.0)
