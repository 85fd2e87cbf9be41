"""Refinement branches (shapes, classifier prior) and the rotation of class anchors into the LiDAR frame."""
import math

import numpy as np
import pytest
import torch

pytest.importorskip("mmcv")

from projects.mmdet3d_plugin.core.box3d import COS_YAW, SIN_YAW  # noqa: E402
from projects.mmdet3d_plugin.models.motion import MotionPlanningHead, MotionPlanningRefinementModule  # noqa: E402


def test_refinement_shapes_and_classifier_prior():
    torch.manual_seed(0)
    module = MotionPlanningRefinementModule(embed_dims=16, fut_ts=12, fut_mode=6, ego_fut_ts=6, ego_fut_mode=6)
    module.init_weight()
    motion_cls, motion_reg, plan_cls, plan_reg, status = module(
        torch.randn(2, 5, 6, 16), torch.randn(2, 1, 18, 16), torch.randn(2, 1, 16), torch.randn(2, 1, 16)
    )
    assert motion_cls.shape == (2, 5, 6) and motion_reg.shape == (2, 5, 6, 12, 2), "agent modes x steps"
    assert plan_cls.shape == (2, 1, 18) and plan_reg.shape == (2, 1, 18, 6, 2), "3 commands x 6 modes"
    assert status.shape == (2, 1, 10), "10-value ego status"
    prior = module.motion_cls_branch[-1].bias.sigmoid().item()
    assert abs(prior - 0.01) < 1e-6, f"mode classifiers start at p = 0.01, got {prior}"


def test_motion_anchor_end_points_follow_class_and_yaw():
    motion_anchor = np.zeros((10, 2, 3, 2), dtype=np.float32)
    motion_anchor[4, :, -1] = [[1.0, 0.0], [0.0, 2.0]]  # class 4: end points (1, 0) and (0, 2)
    head = MotionPlanningHead(
        fut_ts=3, fut_mode=2, ego_fut_mode=1, ego_fut_ts=1, embed_dims=16,
        motion_anchor=motion_anchor, plan_anchor=np.zeros((3, 1, 1, 2)), operation_order=[],
    )
    cls = torch.full((1, 1, 10), -5.0)
    cls[0, 0, 4] = 5.0
    box = torch.zeros(1, 1, 11)
    box[0, 0, SIN_YAW], box[0, 0, COS_YAW] = 2.0, 0.0  # yaw 90 deg; (sin, cos) need not be unit length
    end = head.get_motion_anchor(cls, box)
    expected = torch.tensor([[[[0.0, 1.0], [-2.0, 0.0]]]])
    assert torch.allclose(end, expected, atol=1e-6), f"rotated by +90 deg: {end.tolist()}"
    assert not head.motion_anchor.requires_grad and not head.plan_anchor.requires_grad, "anchors are constants"
    assert math.isclose(float(head.motion_anchor[4, 1, -1, 1]), 2.0), "anchor stored as given"
