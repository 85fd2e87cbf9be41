"""Whole stage-2 model at test sizes: training step, where gradients flow, two-frame inference outputs."""
from pathlib import Path

import pytest
import torch

from tests.models.batch_factory import build_model, inference_data, load_config, make_batch

REDUCED_STAGE2_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sparsedrive_small_stage2_reduced.py"
MOTION_KEYS = {
    "motion_loss_cls_0",
    "motion_loss_reg_0",
    "planning_loss_cls_0",
    "planning_loss_reg_0",
    "planning_loss_status_0",
}
FROZEN_MOTION = {
    "head.motion_plan_head.motion_anchor",
    "head.motion_plan_head.plan_anchor",
    "head.motion_plan_head.instance_queue.ego_anchor",
}


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_model(load_config(REDUCED_STAGE2_CONFIG), seed=0)


def _reset(model) -> None:
    model.head.det_head.instance_bank.reset()
    model.head.map_head.instance_bank.reset()
    model.head.motion_plan_head.instance_queue.reset()


def _grad_norm(model, prefix: str) -> float:
    grads = [p.grad.norm() for n, p in model.named_parameters() if n.startswith(prefix) and p.grad is not None]
    return float(torch.stack(grads).sum()) if grads else 0.0


@pytest.mark.slow
def test_training_step_finite_losses_and_gradients(model):
    _reset(model)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():  # frame 0 fills the queues, so frame 1 attends to a real history
        model(**make_batch(batch_size=1, frame=0, seed=0))
    losses = model(**make_batch(batch_size=1, frame=1, seed=0))
    assert model.head.motion_plan_head.instance_queue.ego_period.tolist() == [[2]], "second frame of the scene"
    assert MOTION_KEYS <= set(losses), f"motion/planning loss keys missing: {sorted(MOTION_KEYS - set(losses))}"
    for name, value in losses.items():
        assert torch.isfinite(value).all(), f"{name} is not finite: {value}"

    model.zero_grad(set_to_none=True)
    sum(losses[k] for k in MOTION_KEYS).backward(retain_graph=True)
    # motion and planning losses also train perception (nothing is detached upstream except queues/anchors)
    for prefix in ("img_backbone.", "img_neck.", "head.det_head.layers.", "head.det_head.anchor_encoder.",
                   "head.map_head.layers.", "head.motion_plan_head.instance_queue.ego_feature_encoder."):
        assert _grad_norm(model, prefix) > 0, f"motion/planning losses give no gradient to {prefix}"

    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"trainable parameters without gradient: {no_grad}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad and n.startswith("head.motion_plan_head")}
    assert frozen == FROZEN_MOTION, f"stage 2 freezes only the constant anchors, got {sorted(frozen)}"


@pytest.mark.slow
def test_two_inference_frames_give_upstream_shapes_and_a_growing_queue(model):
    _reset(model)
    model.eval()
    with torch.no_grad():
        model(**inference_data(make_batch(batch_size=1, frame=0, seed=1)))
        results = model(**inference_data(make_batch(batch_size=1, frame=1, seed=1)))
    result = results[0]["img_bbox"]
    num_out = len(result["boxes_3d"])
    assert result["trajs_3d"].shape == (num_out, 6, 12, 2), f"agent trajectories {tuple(result['trajs_3d'].shape)}"
    assert result["trajs_score"].shape == (num_out, 6), "one score per agent mode"
    assert result["planning"].shape == (3, 6, 6, 2), "3 commands x 6 modes x 6 steps"
    assert result["planning_score"].shape == (3, 6) and result["final_planning"].shape == (6, 2), "ego plan"
    assert result["ego_period"].tolist() == [2], "ego tracked over both frames"
    assert result["ego_anchor_queue"].shape == (1, 2, 10), "two queued ego boxes"
    assert result["anchor_queue"].shape == (num_out, 2, 10), "two queued boxes per agent"
    for key in ("trajs_3d", "planning", "final_planning"):
        assert torch.isfinite(result[key]).all(), f"{key} not finite"
    # the final plan is one of the command's modes (the GT command is 'straight', index 2)
    assert any(torch.equal(result["final_planning"], mode) for mode in result["planning"][2]), "final plan"
