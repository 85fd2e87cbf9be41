"""Box state layout and the encode/decode helpers."""
import math

import torch

from projects.mmdet3d_plugin.core import box3d


def test_state_indices_follow_upstream_layout():
    names = ["X", "Y", "Z", "W", "L", "H", "SIN_YAW", "COS_YAW", "VX", "VY", "VZ"]
    assert [getattr(box3d, n) for n in names] == list(range(11)), "encoded state indices changed"
    assert (box3d.YAW, box3d.CNS, box3d.YNS) == (6, 0, 1), "decoded yaw / quality indices changed"


def test_encode_box_hand_computed():
    box = torch.tensor([[1.0, 2.0, 3.0, math.e, 1.0, math.e**2, math.pi / 2, 0.5, -0.5]])
    expected = torch.tensor([[1.0, 2.0, 3.0, 1.0, 0.0, 2.0, 1.0, 0.0, 0.5, -0.5]])
    assert torch.allclose(box3d.encode_box(box), expected, atol=1e-6), "encode_box: wrong log size or sin/cos"


def test_decode_inverts_encode():
    box = torch.tensor([[4.0, -3.0, 0.5, 4.1, 1.8, 1.5, -2.5, 1.0, 2.0, 0.3]])
    decoded = box3d.decode_box(box3d.encode_box(box))
    assert torch.allclose(decoded, box, atol=1e-5), "decode_box(encode_box(box)) should give back the box"


def test_decode_uses_atan2_of_unnormalised_pair():
    state = torch.zeros(11)
    state[box3d.SIN_YAW], state[box3d.COS_YAW] = 2.0, -2.0
    yaw = box3d.decode_box(state)[box3d.YAW]
    assert torch.isclose(yaw, torch.tensor(3 * math.pi / 4)), f"yaw from (sin, cos)=(2, -2) should be 3pi/4, got {yaw}"
