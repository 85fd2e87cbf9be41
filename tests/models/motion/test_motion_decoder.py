"""Planning selection by command, collision-aware rescoring, and the motion decoder's outputs."""
import math

import pytest
import torch

pytest.importorskip("mmdet")

from projects.mmdet3d_plugin.core.box3d import COS_YAW, X, Y  # noqa: E402
from projects.mmdet3d_plugin.models.motion.decoder import (  # noqa: E402
    HierarchicalPlanningDecoder,
    SparseBox3DMotionDecoder,
    check_collision,
)

M_E, T_E = 6, 6


def box(x, y, w, l, yaw=0.0):
    return torch.tensor([x, y, w, l, yaw])


def test_check_collision_hand_cases():
    unit = box(0, 0, 2, 2)
    assert check_collision(unit, box(1.5, 0, 2, 2)).item(), "overlapping squares collide"
    assert not check_collision(unit, box(2.5, 0, 2, 2)).item(), "separated squares do not"
    assert check_collision(unit, box(2.0, 0, 2, 2)).item(), "touching edges count (inclusive test)"
    # a thin box whose end reaches into a square offset in x: only when it heads along x
    assert check_collision(box(0, 0, 4.4, 0.2, 0.0), box(2, 0, 1, 1)).item(), "heading +x: its corner is inside"
    assert not check_collision(box(0, 0, 4.4, 0.2, math.pi / 2), box(2, 0, 1, 1)).item(), "heading +y misses"
    # rough test: boxes crossing without any corner inside the other are not detected (as upstream)
    assert not check_collision(box(0, 0, 6, 0.2, 0.0), box(2, 0, 1, 1)).item(), "corner-free crossing"


def planning_output(cls_logits, reg_steps):
    bs = cls_logits.shape[0]
    return {
        "classification": [cls_logits.reshape(bs, 1, 3 * M_E)],
        "prediction": [reg_steps.reshape(bs, 1, 3 * M_E, T_E, 2)],
        "status": [torch.zeros(bs, 1, 10)],
        "period": torch.ones(bs, 1, dtype=torch.long),
        "anchor_queue": [torch.zeros(bs, 1, 11)],
    }


def scene(agent_xy, confidence, bs=1, num_agents=2):
    """Det + motion outputs: static 1 x 1 m agents (yaw 0); agent 0 is unconfident and far (see quirk rows)."""
    det_box = torch.zeros(bs, num_agents, 11)
    det_box[..., COS_YAW] = 1.0
    det_box[:, 0, X], det_box[:, 0, Y] = -50.0, -50.0
    det_box[:, 1, X], det_box[:, 1, Y] = agent_xy
    logits = torch.full((bs, num_agents, 10), -5.0)
    logits[:, 1, 0] = math.log(confidence / (1 - confidence))
    det_output = {"classification": [logits], "prediction": [det_box]}
    motion_output = {
        "classification": [torch.zeros(bs, num_agents, 6)],
        "prediction": [torch.zeros(bs, num_agents, 6, 12, 2)],
    }
    return det_output, motion_output


def ego_plan():
    """Command 2 (straight): mode 0 drives +y 2 m per step with the best logit; other modes stay put."""
    reg = torch.zeros(1, 3, M_E, T_E, 2)
    reg[0, 2, 0, :, 1] = 2.0
    cls = torch.zeros(1, 3, M_E)
    cls[0, 2, 0] = 3.0
    cls[0, 2, 3] = 1.0
    return cls, reg


DATA = {"gt_ego_fut_cmd": torch.tensor([[0.0, 0.0, 1.0]])}


def test_selection_follows_the_command_and_cumsums():
    torch.manual_seed(0)
    cls = torch.randn(2, 3, M_E)
    reg = torch.randn(2, 3, M_E, T_E, 2)
    data = {"gt_ego_fut_cmd": torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])}
    det_output, motion_output = scene((0.0, 100.0), 0.9, bs=2)
    decoder = HierarchicalPlanningDecoder(T_E, M_E, use_rescore=False)
    result = decoder.decode(det_output, motion_output, planning_output(cls, reg), data)
    for b, cmd in enumerate([1, 0]):
        mode = cls[b, cmd].argmax()
        assert torch.allclose(result[b]["final_planning"], reg[b, cmd, mode].cumsum(0)), f"sample {b}"
        assert torch.allclose(result[b]["planning"], reg[b].cumsum(-2)), "all plans as positions"
        assert torch.allclose(result[b]["planning_score"], cls[b].sigmoid()), "scores untouched without rescore"
    assert result[0]["ego_anchor_queue"].shape == (1, 1, 10), "decoded ego boxes [1, T_q, 10]"


@pytest.mark.parametrize("fix_ego_offset", [False, True])
def test_rescore_skips_a_mode_that_hits_a_confident_agent(fix_ego_offset):
    cls, reg = ego_plan()
    decoder = HierarchicalPlanningDecoder(T_E, M_E, use_rescore=True, fix_ego_offset=fix_ego_offset)
    det_output, motion_output = scene((0.0, 8.0), 0.9)
    result = decoder.decode(det_output, motion_output, planning_output(cls, reg), DATA)[0]
    assert torch.allclose(result["final_planning"], torch.zeros(T_E, 2)), "mode 3 (standing) wins over mode 0"
    assert result["planning_score"][2, 0] < 1e-6, "colliding mode pushed to ~0"

    det_output, motion_output = scene((0.0, 8.0), 0.4)
    result = decoder.decode(det_output, motion_output, planning_output(cls, reg), DATA)[0]
    assert torch.allclose(result["final_planning"], reg[0, 2, 0].cumsum(0)), "unconfident agents are ignored"


def test_rescore_keeps_scores_when_every_mode_collides():
    cls, reg = ego_plan()
    decoder = HierarchicalPlanningDecoder(T_E, M_E, use_rescore=True)
    det_output, motion_output = scene((0.0, 1.0), 0.9)
    result = decoder.decode(det_output, motion_output, planning_output(cls, reg), DATA)[0]
    assert torch.allclose(result["planning_score"], cls[0].sigmoid()), "all modes collide: no change"


def test_forward_offset_only_with_the_fix():
    # The agent's rear edge sits 0.3 m beyond mode 0's final front edge (y = 12 + 4.488 / 2):
    # only the intended 0.5 m forward shift makes it collide.
    cls, reg = ego_plan()
    det_output, motion_output = scene((0.0, 12 + 4.08 * 1.1 / 2 + 0.5 + 0.3), 0.9)
    kept = HierarchicalPlanningDecoder(T_E, M_E, use_rescore=True, fix_ego_offset=False)
    fixed = HierarchicalPlanningDecoder(T_E, M_E, use_rescore=True, fix_ego_offset=True)
    upstream = kept.decode(det_output, motion_output, planning_output(cls, reg), DATA)[0]
    shifted = fixed.decode(det_output, motion_output, planning_output(cls, reg), DATA)[0]
    assert torch.allclose(upstream["final_planning"], reg[0, 2, 0].cumsum(0)), "upstream: no shift, no hit"
    assert torch.allclose(shifted["final_planning"], torch.zeros(T_E, 2)), "fixed: shifted box hits"


def test_motion_decoder_orders_by_score_and_adds_the_box_centre():
    num, ts = 4, 3
    logits = torch.tensor([[[0.0], [3.0], [-2.0], [1.0]]])
    centres = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    boxes = torch.zeros(1, num, 11)
    boxes[0, :, [X, Y]] = centres
    boxes[0, :, COS_YAW] = 1.0
    quality = torch.zeros(1, num, 2)
    quality[0, 3, 0] = 10.0  # centerness lifts instance 3 above instance 1
    trajs = torch.randn(1, num, 6, ts, 2)
    motion_output = {
        "classification": [torch.randn(1, num, 6)],
        "prediction": [trajs],
        "anchor_queue": [boxes, boxes],
        "period": torch.tensor([[1, 2, 3, 4]]),
    }
    decoder = SparseBox3DMotionDecoder(num_output=2)
    out = decoder.decode([logits], [boxes], torch.arange(num)[None], [quality], motion_output)[0]
    expected = trajs[0, [3, 1]].cumsum(-2) + centres[[3, 1]][:, None, None]
    assert torch.allclose(out["trajs_3d"], expected), "instances 3 then 1, positions = cumsum + centre"
    assert out["trajs_score"].shape == (2, 6) and out["anchor_queue"].shape == (2, 2, 10), "shapes"
    assert out["period"].tolist() == [4, 2], "periods follow the same order"
