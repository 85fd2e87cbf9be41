"""Evaluation helpers against the libraries: pyquaternion for rotations, terminaltables for the tables."""
import numpy as np
from pyquaternion import Quaternion

from projects.mmdet3d_plugin.datasets.evaluation.common import format_table, quaternion_multiply, quaternion_to_matrix


def test_quaternion_matrix_is_pyquaternions_even_unnormalised():
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(20, 4)) * 3:
        np.testing.assert_allclose(quaternion_to_matrix(q), Quaternion(q).rotation_matrix, atol=1e-12)


def test_vectorised_quaternion_product_equals_pyquaternion_and_scipy():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(1)
    frame = rng.normal(size=4)
    frame /= np.linalg.norm(frame)
    yaws = rng.normal(size=(50, 4))
    yaws /= np.linalg.norm(yaws, axis=1, keepdims=True)
    ours = quaternion_multiply(frame[None], yaws)
    assert ours.shape == (50, 4)
    expected = np.array([(Quaternion(frame) * Quaternion(q)).elements for q in yaws])
    np.testing.assert_allclose(ours, expected, atol=1e-12, err_msg="Hamilton product differs from pyquaternion's")
    scipy_xyzw = (Rotation.from_quat(np.roll(frame, -1)) * Rotation.from_quat(np.roll(yaws, -1, axis=1))).as_quat()
    np.testing.assert_allclose(ours, np.roll(scipy_xyzw, 1, axis=1), atol=1e-12, err_msg="differs from scipy's")
    assert quaternion_multiply(frame[None], np.zeros((0, 4))).shape == (0, 4), "no boxes, no rotations"


def test_format_table_is_a_centred_grid():
    """terminaltables centres like str.center (an odd spare space goes left); prettytable's grid otherwise."""
    text = format_table(["name", "AP"], [["divider", 0.5], ["ped", "x"]])
    assert text.splitlines() == [
        "+---------+-----+",
        "|   name  |  AP |",
        "+---------+-----+",
        "| divider | 0.5 |",
        "|   ped   |  x  |",
        "+---------+-----+",
    ], text
