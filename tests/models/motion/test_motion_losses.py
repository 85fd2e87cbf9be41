"""Motion and planning losses against hand-written references with upstream's weights."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("mmcv")

import projects.mmdet3d_plugin.models  # noqa: E402,F401  (registers the plugin)
from projects.mmdet3d_plugin.models.motion import MotionPlanningHead  # noqa: E402

T, M, T_E, M_E = 3, 2, 2, 2


def focal(logits, target, weight):
    """Sigmoid focal loss (gamma 2, alpha 0.25) summed over elements, per-row weight."""
    p = logits.sigmoid()
    onehot = F.one_hot(target, logits.shape[-1]).bool()
    pt = torch.where(onehot, p, 1 - p)
    alpha = torch.where(onehot, torch.tensor(0.25), torch.tensor(0.75))
    return (-alpha * (1 - pt) ** 2 * pt.log() * weight[:, None]).sum()


def build_head() -> MotionPlanningHead:
    focal_cfg = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25)
    return MotionPlanningHead(
        fut_ts=T,
        fut_mode=M,
        ego_fut_ts=T_E,
        ego_fut_mode=M_E,
        motion_anchor=np.zeros((10, M, T, 2)),
        plan_anchor=np.zeros((3, M_E, T_E, 2)),
        embed_dims=16,
        operation_order=[],
        motion_sampler=dict(type="MotionTarget"),
        motion_loss_cls=dict(**focal_cfg, loss_weight=0.2),
        motion_loss_reg=dict(type="L1Loss", loss_weight=0.2),
        planning_sampler=dict(type="PlanningTarget", ego_fut_ts=T_E, ego_fut_mode=M_E),
        plan_loss_cls=dict(**focal_cfg, loss_weight=0.5),
        plan_loss_reg=dict(type="L1Loss", loss_weight=1.0),
        plan_loss_status=dict(type="L1Loss", loss_weight=1.0),
    )


def test_motion_losses_match_reference():
    torch.manual_seed(0)
    head = build_head()
    cls = torch.randn(1, 3, M)
    reg = torch.randn(1, 3, M, T, 2)
    gt = [torch.randn(2, T, 2)]
    mask = [torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])]
    cache = {"indices": [(torch.tensor([2, 0]), torch.tensor([0, 1]))]}
    losses = head.loss_motion({"classification": [cls], "prediction": [reg]}, {
        "gt_agent_fut_trajs": gt, "gt_agent_fut_masks": mask}, cache)
    assert set(losses) == {"motion_loss_cls_0", "motion_loss_reg_0"}, f"keys: {sorted(losses)}"

    target = torch.zeros(3, T, 2)
    weight = torch.zeros(3, T)
    target[2], target[0] = gt[0][0], gt[0][1]
    weight[2], weight[0] = mask[0][0], mask[0][1]
    dist = ((target.cumsum(1)[:, None] - reg[0].cumsum(2)).norm(dim=-1) * weight[:, None]).mean(-1)
    best = dist.argmin(-1)
    best_reg = reg[0, torch.arange(3), best]
    expected_reg = 0.2 * ((best_reg.cumsum(1) - target.cumsum(1)).abs() * weight[..., None]).sum() / 2
    expected_cls = 0.2 * focal(cls[0], best, weight.any(-1).float()) / 2
    assert torch.allclose(losses["motion_loss_reg_0"], expected_reg, atol=1e-6), "reg: cumulative L1 / num_pos"
    assert torch.allclose(losses["motion_loss_cls_0"], expected_cls, atol=1e-6), "cls: focal / num_pos"


def test_motion_losses_zero_without_ground_truth():
    head = build_head()
    out = {"classification": [torch.randn(1, 3, M)], "prediction": [torch.randn(1, 3, M, T, 2)]}
    data = {"gt_agent_fut_trajs": [torch.zeros(0, T, 2)], "gt_agent_fut_masks": [torch.zeros(0, T)]}
    losses = head.loss_motion(out, data, {"indices": [(torch.zeros(0).long(), torch.zeros(0).long())]})
    assert losses["motion_loss_reg_0"].item() == 0.0, "no matched agent: zero regression loss"
    assert losses["motion_loss_cls_0"].item() == 0.0, "no matched agent: every mode weight is zero"


def test_planning_losses_match_reference():
    torch.manual_seed(1)
    head = build_head()
    bs = 2
    cls = torch.randn(bs, 1, 3 * M_E)
    reg = torch.randn(bs, 1, 3 * M_E, T_E, 2)
    status = torch.randn(bs, 1, 10)
    data = {
        "gt_ego_fut_trajs": torch.randn(bs, T_E, 2),
        "gt_ego_fut_masks": torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
        "gt_ego_fut_cmd": torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
        "ego_status": torch.randn(bs, 10),
    }
    losses = head.loss_planning({"classification": [cls], "prediction": [reg], "status": [status]}, data)
    assert set(losses) == {"planning_loss_cls_0", "planning_loss_reg_0", "planning_loss_status_0"}, "keys"

    cmd = [2, 0]
    cls_cmd = torch.stack([cls[b, 0, c * M_E : (c + 1) * M_E] for b, c in enumerate(cmd)])
    reg_cmd = torch.stack([reg[b, 0, c * M_E : (c + 1) * M_E] for b, c in enumerate(cmd)])
    gt, mask = data["gt_ego_fut_trajs"], data["gt_ego_fut_masks"]
    dist = ((gt.cumsum(1)[:, None] - reg_cmd.cumsum(2)).norm(dim=-1) * mask[:, None]).mean(-1)
    best = dist.argmin(-1)
    best_reg = reg_cmd[torch.arange(bs), best]
    expected_reg = ((best_reg - gt).abs() * mask[..., None]).mean()
    expected_cls = 0.5 * focal(cls_cmd, best, torch.ones(bs)) / (bs * M_E)
    expected_status = (status[:, 0] - data["ego_status"]).abs().mean()
    assert torch.allclose(losses["planning_loss_reg_0"], expected_reg, atol=1e-6), "reg: per-step L1, mean"
    assert torch.allclose(losses["planning_loss_cls_0"], expected_cls, atol=1e-6), "cls: focal, mean"
    assert torch.allclose(losses["planning_loss_status_0"], expected_status, atol=1e-6), "status: L1 mean"


def test_missing_anchor_file_names_the_file_and_the_fix(tmp_path):
    missing = str(tmp_path / "kmeans_motion_6.npy")
    with pytest.raises(FileNotFoundError, match=r"kmeans_motion_6\.npy is missing.*sh test/preprocess\.sh"):
        MotionPlanningHead(motion_anchor=missing, plan_anchor=np.zeros((3, 3, 6, 2)))


def test_wrong_anchor_shape_is_refused():
    with pytest.raises(ValueError, match="plan_anchor"):
        MotionPlanningHead(motion_anchor=np.zeros((10, 6, 12, 2)), plan_anchor=np.zeros((3, 6, 6, 2)))


def test_truncated_anchor_file_is_one_oserror_naming_it(tmp_path):
    path = tmp_path / "kmeans_plan_6.npy"
    np.save(path, np.zeros((3, 6, 6, 2), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(OSError, match=r"plan_anchor: .*kmeans_plan_6\.npy cannot be read .*sh test/preprocess\.sh"):
        MotionPlanningHead(motion_anchor=np.zeros((10, 6, 12, 2)), plan_anchor=str(path))
