"""Best-mode selection of MotionTarget / PlanningTarget against hand-computed distances."""
import pytest
import torch

pytest.importorskip("mmdet")

from projects.mmdet3d_plugin.models.motion.target import (  # noqa: E402
    MotionTarget,
    PlanningTarget,
    get_cls_target,
)

# GT displacements (1, 0) twice -> cumulative positions (1, 0), (2, 0)
GT = torch.tensor([[1.0, 0.0], [1.0, 0.0]])


def modes(*steps):
    """[1, 1, M, 2, 2] predictions from per-mode per-step x displacements."""
    x = torch.tensor(steps, dtype=torch.float32)
    return torch.stack([x, torch.zeros_like(x)], dim=-1)[None, None]


def test_best_mode_uses_cumulative_positions_not_steps():
    # mode 0: cum (0, 2) -> distances (1, 0), mean 0.5; mode 1: cum (1.6, 2.6) -> (0.6, 0.6), mean 0.6.
    # Per-step errors would prefer mode 1 (0.3 vs 1.0); the cumulative rule picks mode 0.
    pred = modes([0.0, 2.0], [1.6, 1.0])
    best = get_cls_target(pred, GT[None, None], torch.ones(1, 1, 2))
    assert best.tolist() == [[0]], f"cumulative distance should pick mode 0, got {best.tolist()}"


def test_masked_steps_do_not_count():
    # mode 0: cum (1, 6) -> (0, 4); mode 1: cum (1.5, 2) -> (0.5, 0)
    pred = modes([1.0, 5.0], [1.5, 0.5])
    all_steps = get_cls_target(pred, GT[None, None], torch.ones(1, 1, 2))
    first_only = get_cls_target(pred, GT[None, None], torch.tensor([[[1.0, 0.0]]]))
    assert all_steps.tolist() == [[1]], "with both steps mode 1 is closer"
    assert first_only.tolist() == [[0]], "with the second step masked mode 0 is exact"


def test_motion_target_follows_det_assignment():
    pred = torch.zeros(2, 3, 2, 2, 2)
    pred[0, 2, 1] = GT  # agent 2 of sample 0, mode 1 is exact
    gt_trajs = [torch.stack([torch.zeros(2, 2), GT]), torch.zeros(0, 2, 2)]
    gt_masks = [torch.ones(2, 2), torch.zeros(0, 2)]
    cache = {"indices": [(torch.tensor([2, 0]), torch.tensor([1, 0])), (torch.tensor([], dtype=torch.long),) * 2]}
    cls_target, cls_weight, best_reg, reg_target, reg_weight, num_pos = MotionTarget().sample(
        pred, gt_trajs, gt_masks, cache
    )
    assert num_pos.tolist() == [2.0], "two matched agents"
    assert torch.equal(reg_target[0, 2], GT) and torch.equal(reg_target[0, 0], torch.zeros(2, 2)), "targets"
    assert reg_target[0, 1].abs().sum() == 0 and reg_weight[0, 1].sum() == 0, "unmatched agent: zero target, mask"
    assert cls_weight.tolist() == [[True, False, True], [False, False, False]], "weight = any valid step"
    assert cls_target[0, 2].item() == 1, "agent 2 takes the exact mode"
    assert torch.equal(best_reg[0, 2], GT), "best_reg is the chosen mode's displacements"
    assert best_reg.shape == (2, 3, 2, 2), "best_reg [B, A, T, 2]"


def test_planning_target_keeps_the_gt_command():
    ego_fut_mode, ts = 2, 2
    cls = torch.arange(6, dtype=torch.float32).reshape(1, 1, 6)
    reg = torch.zeros(1, 1, 6, ts, 2)
    reg[0, 0, 3] = GT  # command 1, mode 1
    data = {"gt_ego_fut_cmd": torch.tensor([[0.0, 1.0, 0.0]])}
    cls_pred, cls_target, cls_weight, best_reg, reg_target, reg_weight = PlanningTarget(ts, ego_fut_mode).sample(
        cls, reg, GT[None], torch.ones(1, ts), data
    )
    assert cls_pred.tolist() == [[[2.0, 3.0]]], "logits of command 1 (command-major order)"
    assert cls_target.tolist() == [[1]] and cls_weight.tolist() == [[True]], "mode 1 of the command"
    assert torch.equal(best_reg[0, 0], GT), "best ego mode"
    assert reg_target.shape == (1, 1, ts, 2) and reg_weight.shape == (1, 1, ts), "targets gain a mode axis"
