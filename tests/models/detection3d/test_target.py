"""SparseBox3DTarget: matching cost, Hungarian assignment, empty GT, regression weights, denoising anchors."""
import math

import torch

from projects.mmdet3d_plugin.models.detection3d.target import SparseBox3DTarget

DET_REG_WEIGHTS = [2.0] * 3 + [0.5] * 3 + [0.0] * 4
CONE_WEIGHTS = [2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def det_sampler(**kwargs) -> SparseBox3DTarget:
    cfg = dict(cls_weight=2.0, box_weight=0.25, reg_weights=DET_REG_WEIGHTS, cls_wise_reg_weights={9: CONE_WEIGHTS})
    cfg.update(kwargs)
    return SparseBox3DTarget(**cfg)


def gt_box(x: float, yaw: float = 0.0, vel=(0.0, 0.0)) -> list:
    return [x, 0.0, 0.0, 1.0, 1.0, 1.0, yaw, *vel]


def pred_state(x: float) -> list:
    return [x, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_focal_class_cost_hand_computed():
    sampler = det_sampler()
    cost = sampler._cls_cost(torch.zeros(1, 2, 3), [torch.tensor([1])])[0]
    # p = 0.5: (alpha (1-p)^2 - (1-alpha) p^2) * -log(0.5) * cls_weight
    expected = (0.25 * 0.25 - 0.75 * 0.25) * math.log(2) * 2.0
    assert cost.shape == (2, 1) and torch.allclose(cost, torch.full((2, 1), expected)), f"class cost {cost}"


def test_hungarian_beats_greedy_and_unmatched_are_background():
    sampler = det_sampler()
    # x only: pred0 is nearest to gt0 but the optimum gives it gt1, since pred1 only fits gt0
    box_pred = torch.tensor([[pred_state(0.4), pred_state(-0.1), pred_state(30.0)]])
    cls_pred = torch.zeros(1, 3, 10)
    gt_boxes = [torch.tensor([gt_box(0.0), gt_box(1.0)])]
    cls_target, box_target, reg_weights = sampler.sample(cls_pred, box_pred, [torch.tensor([3, 7])], gt_boxes)
    assert cls_target.tolist() == [[7, 3, 10]], f"assignment should be pred0->gt1, pred1->gt0, got {cls_target}"
    assert box_target[0, 0, 0] == 1.0 and box_target[0, 1, 0] == 0.0, "box targets follow the assignment"
    assert torch.all(box_target[0, 2] == 0) and torch.all(reg_weights[0, 2] == 0), "unmatched rows stay zero"
    pred_idx, gt_idx = sampler.indices[0]
    assert sorted(zip(pred_idx.tolist(), gt_idx.tolist())) == [(0, 1), (1, 0)], "indices kept for the motion loss"
    assert torch.allclose(box_target[0, 0, 6:8], torch.tensor([0.0, 1.0])), "yaw encoded as (sin, cos)"


def test_box_cost_uses_size_log_and_matching_weights():
    sampler = det_sampler()
    box_pred = torch.tensor([[pred_state(0.0)]])
    target = torch.tensor([[1.0, 0.0, 0.0, 0.1, 0.0, 0.0, 5.0, 5.0, 9.0, 9.0]])
    cost = sampler._box_cost(box_pred, [target], [torch.ones_like(target)])[0]
    expected = (2.0 * 1.0 + 0.5 * 0.1) * 0.25  # yaw and velocity carry zero matching weight
    assert torch.isclose(cost[0, 0], torch.tensor(expected)), f"box cost {cost.item()} != {expected}"


def test_empty_gt_gives_background_everywhere():
    sampler = det_sampler()
    box_pred = torch.randn(2, 4, 10)
    gts = [torch.zeros(0, 9), torch.tensor([gt_box(1.0)])]
    cls_target, box_target, reg_weights = sampler.sample(
        torch.randn(2, 4, 10), box_pred, [torch.zeros(0, dtype=torch.long), torch.tensor([2])], gts
    )
    assert (cls_target[0] == 10).all() and (box_target[0] == 0).all() and (reg_weights[0] == 0).all(), (
        "a sample without GT must be all background with zero box targets and weights"
    )
    assert sampler.indices[0] == [None, None], "no assignment for the empty sample"
    assert (cls_target[1] == 2).sum() == 1, "the other sample still gets its single match"


def test_regression_weights_nan_velocity_and_class_wise_override():
    sampler = det_sampler()
    gts = [torch.tensor([gt_box(0.0, vel=(float("nan"), float("nan"))), gt_box(5.0)])]
    box_pred = torch.tensor([[pred_state(0.0), pred_state(5.0)]])
    _, box_target, reg_weights = sampler.sample(torch.zeros(1, 2, 10), box_pred, [torch.tensor([0, 9])], gts)
    assert reg_weights[0, 0].tolist() == [1.0] * 8 + [0.0, 0.0], "NaN velocity dims must get zero weight"
    assert reg_weights[0, 1].tolist() == CONE_WEIGHTS, "traffic cones use the class-wise weights"
    assert torch.isnan(box_target[0, 0, 8:]).all(), "NaN targets are passed through (the head zeroes them)"


def test_no_denoising_when_disabled():
    assert det_sampler().get_dn_anchors([torch.tensor([1])], [torch.tensor([gt_box(0.0)])]) is None, (
        "num_dn_groups=0 must disable denoising"
    )


def test_denoising_anchors_shapes_masks_and_targets():
    torch.manual_seed(0)
    sampler = det_sampler(num_dn_groups=2, dn_noise_scale=[2.0] * 3 + [0.5] * 7, add_neg_dn=True)
    cls = [torch.tensor([1, 4]), torch.tensor([2])]
    boxes = [torch.tensor([gt_box(0.0), gt_box(20.0)]), torch.tensor([gt_box(-20.0)])]
    dn_anchor, dn_box_target, dn_cls_target, attn_mask, valid_mask, dn_id = sampler.get_dn_anchors(cls, boxes)
    # per group: 2 (max GT) positives + 2 negatives; 2 groups -> 8 per sample
    assert dn_anchor.shape == (2, 8, 10) and dn_box_target.shape == (2, 8, 10), "dn anchor shapes"
    assert dn_cls_target.shape == (2, 8) and valid_mask.shape == (2, 8) and dn_id is None, "dn target shapes"
    blocks = torch.block_diag(torch.ones(4, 4), torch.ones(4, 4)) == 0
    assert torch.equal(attn_mask, blocks), "attention is blocked exactly between different groups"
    assert valid_mask[0].all(), "sample 0 has two real GT: every anchor is valid"
    assert valid_mask[1].sum() == 4, "sample 1 has one real GT: one positive and one negative per group"
    positives = dn_cls_target >= 0
    assert positives.sum(dim=1).tolist() == [4, 2], "one positive per real GT and group"
    error = (dn_anchor - dn_box_target)[positives].abs()
    assert (error <= torch.tensor([2.0] * 3 + [0.5] * 7) + 1e-5).all(), "positives lie within the noise scale"


def test_temporal_denoising_reuses_cached_groups_by_instance_id():
    torch.manual_seed(0)
    sampler = det_sampler(num_dn_groups=2, num_temp_dn_groups=1, dn_noise_scale=[2.0] * 3 + [0.5] * 7)
    boxes = [torch.tensor([gt_box(0.0), gt_box(20.0)]), torch.tensor([gt_box(-20.0)])]
    ids = [torch.tensor([7, 8]), torch.tensor([9])]
    dn = sampler.get_dn_anchors([torch.tensor([1, 4]), torch.tensor([2])], boxes, ids)
    dn_anchor, _, dn_cls, _, valid, dn_id = dn
    sampler.cache_dn(torch.randn(2, 8, 4), dn_anchor, dn_cls, valid, dn_id)
    assert sampler.dn_metas["dn_anchor"].shape == (2, 1, 4, 10), "one cached group of 4 noisy anchors per sample"

    # next frame: instance 8 is gone; only sample 0 continues its sequence
    new = sampler.get_dn_anchors(
        [torch.tensor([1]), torch.tensor([2])], [torch.tensor([gt_box(1.0)]), torch.tensor([gt_box(-19.0)])],
        [torch.tensor([7]), torch.tensor([9])],
    )
    _, new_reg, new_cls, _, new_valid, new_id = new
    num_normal = 3
    feature, anchor = torch.randn(2, num_normal + 4, 4), torch.randn(2, num_normal + 4, 10)
    mask = torch.tensor([True, False])
    out = sampler.update_dn(feature, anchor, new_reg, new_cls, new_valid, new_id, num_normal, mask)
    out_feature, out_anchor, _, out_cls, _, out_id = out
    assert torch.equal(out_feature[:, :num_normal], feature[:, :num_normal]), "normal instances come first, unchanged"
    # cached group (4 anchors) is cut to the current 2 per group
    assert torch.equal(out_anchor[0, num_normal:num_normal + 2], sampler.dn_metas["dn_anchor"][0, 0, :2]), (
        "a continuing sample reuses the cached noisy anchors"
    )
    assert out_id[0, :2].tolist() == [7, 8] and out_cls[0, 1] == -1, "a vanished instance keeps its id, label -1"
    assert torch.equal(out_cls[1], new_cls[1]) and torch.equal(out_anchor[1], anchor[1]), (
        "a sample whose temporal mask is False keeps the current noisy groups"
    )


def _random_gt(counts, seed: int = 0):
    """Per sample [M, 9] decoded GT boxes (positive sizes) and [M] labels for the given counts."""
    generator = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for m in counts:
        box = torch.randn(m, 9, generator=generator) * 5
        box[:, 3:6] = torch.rand(m, 3, generator=generator) * 4 + 0.1
        boxes.append(box)
        labels.append(torch.randint(0, 10, (m,), generator=generator))
    return boxes, labels


def test_batched_encode_reg_target_equals_per_sample_encoding():
    boxes, _ = _random_gt([3, 0, 5, 1])
    encoded = SparseBox3DTarget.encode_reg_target(boxes, torch.device("cpu"))
    assert [tuple(x.shape) for x in encoded] == [(3, 10), (0, 10), (5, 10), (1, 10)], "split back by GT counts"
    for box, got in zip(boxes, encoded):
        size = box[:, 3:6].log()
        expected = torch.cat([box[:, :3], size, box[:, 6:7].sin(), box[:, 6:7].cos(), box[:, 7:]], dim=-1)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6, msg="batched encoding differs per sample")
    assert SparseBox3DTarget.encode_reg_target([]) == [], "an empty batch gives an empty list"
    all_empty = SparseBox3DTarget.encode_reg_target([torch.zeros(0, 9), torch.zeros(0, 9)])
    assert [tuple(x.shape) for x in all_empty] == [(0, 10), (0, 10)], "samples without GT give [0, 10]"


def test_batched_class_cost_equals_per_sample_focal_cost():
    sampler = det_sampler()
    cls_pred = torch.randn(3, 7, 10, generator=torch.Generator().manual_seed(1)) * 3
    _, labels = _random_gt([4, 0, 2])
    costs = sampler._cls_cost(cls_pred, labels)
    assert costs[1] is None, "a sample without GT has no class cost"
    for i in (0, 2):
        p = cls_pred[i].sigmoid()[:, labels[i]]
        neg = -(1 - p + sampler.eps).log() * (1 - sampler.alpha) * p.pow(sampler.gamma)
        pos = -(p + sampler.eps).log() * sampler.alpha * (1 - p).pow(sampler.gamma)
        expected = (pos - neg) * sampler.cls_weight
        torch.testing.assert_close(costs[i], expected, rtol=0, atol=1e-6, msg=f"sample {i}: batched class cost differs")
