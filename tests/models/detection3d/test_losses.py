"""SparseBox3DLoss with the stage-1 config: box L1, centerness BCE, yawness Gaussian focal, yaw reversal."""
import math

import torch
import torch.nn.functional as F

from projects.mmdet3d_plugin.models.detection3d.losses import SparseBox3DLoss


def det_loss() -> SparseBox3DLoss:
    return SparseBox3DLoss(
        loss_box=dict(type="L1Loss", loss_weight=0.25),
        loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True),
        loss_yawness=dict(type="GaussianFocalLoss"),
        cls_allow_reverse=[5],
    )


def state(x: float = 0.0, sin: float = 0.0, cos: float = 1.0) -> list:
    return [x, 0.0, 0.0, 0.0, 0.0, 0.0, sin, cos, 0.0, 0.0]


def test_empty_gt_gives_zero_losses():
    empty = torch.zeros(0, 10)
    no_labels = torch.zeros(0, dtype=torch.long)
    out = det_loss()(
        empty, empty, weight=empty, avg_factor=1.0, prefix="det_", suffix="_0", quality=torch.zeros(0, 2),
        cls_target=no_labels,
    )
    assert set(out) == {"det_loss_box_0", "det_loss_cns_0", "det_loss_yns_0"}, f"loss keys {sorted(out)}"
    assert all(v.item() == 0.0 for v in out.values()), f"no positives must give zero losses, got {out}"


def test_box_loss_is_weighted_l1_over_avg_factor():
    box = torch.tensor([state(1.0), state(-2.0)])
    target = torch.tensor([state(0.0), state(0.0)])
    weight = torch.ones(2, 10) * 2.0
    out = det_loss()(box, target, weight=weight, avg_factor=4.0)
    expected = 0.25 * (1.0 + 2.0) * 2.0 / 4.0
    assert set(out) == {"loss_box"}, "without quality only the box loss is returned"
    assert torch.isclose(out["loss_box"], torch.tensor(expected)), f"box loss {out['loss_box']} != {expected}"


def test_barrier_yaw_reversal_and_yawness_target():
    box = torch.tensor([state(), state()])
    target = torch.tensor([state(cos=-1.0), state(cos=-1.0)])  # opposite heading for both
    labels = torch.tensor([5, 0])  # barrier (reversible), car
    quality = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    loss = det_loss()
    weight = torch.ones(1, 10)
    out_barrier = loss(box[:1], target[:1], weight=weight, avg_factor=1.0, quality=quality[:1], cls_target=labels[:1])
    out_car = loss(box[1:], target[1:], weight=weight, avg_factor=1.0, quality=quality[1:], cls_target=labels[1:])
    assert out_barrier["loss_box"].item() == 0.0, "a flipped barrier heading must cost nothing"
    assert torch.isclose(out_car["loss_box"], torch.tensor(0.25 * 2.0)), "a car's opposite heading costs |1-(-1)|"
    # yawness on p = sigmoid(2); target 1 for the barrier, 0 for the car (Gaussian focal, alpha 2, gamma 4)
    p = 1 / (1 + math.exp(-2.0))
    pos = -math.log(p) * (1 - p) ** 2
    neg = -math.log(1 - p) * p**2
    assert math.isclose(out_barrier["loss_yns"].item(), pos, rel_tol=1e-5), "barrier yawness target must be 1"
    assert math.isclose(out_car["loss_yns"].item(), neg, rel_tol=1e-5), "car yawness target must be 0"
    assert torch.equal(target[:1], torch.tensor([state(cos=-1.0)])), "the caller's target must not be modified"


def test_centerness_target_is_exp_of_minus_centre_error():
    box = torch.tensor([state(x=3.0)])
    target = torch.tensor([state()])
    quality = torch.tensor([[0.7, 0.0]])
    out = det_loss()(box, target, weight=torch.ones(1, 10), avg_factor=2.0, quality=quality)
    expected = F.binary_cross_entropy_with_logits(torch.tensor(0.7), torch.tensor(math.exp(-3.0))) / 2.0
    assert torch.isclose(out["loss_cns"], expected), f"centerness loss {out['loss_cns']} != {expected}"


def test_centerness_target_gradient_reaches_box_unless_detached():
    target = torch.tensor([state()])
    grads = {}
    for detach in (False, True):
        loss_fn = SparseBox3DLoss(
            loss_box=dict(type="L1Loss", loss_weight=0.0),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True),
            loss_yawness=dict(type="GaussianFocalLoss", loss_weight=0.0),
            detach_centerness_target=detach,
        )
        box = torch.tensor([state(x=1.0)], requires_grad=True)
        quality = torch.tensor([[0.7, 0.0]], requires_grad=True)
        loss_fn(box, target, weight=torch.ones(1, 10), avg_factor=1.0, quality=quality)["loss_cns"].backward()
        grads[detach] = 0.0 if box.grad is None else box.grad[0, 0].item()
    # d/dx BCE(q, exp(-|x|)) = -log-odds(q) * d exp(-x)/dx = q_logit * exp(-1)   (BCE target gradient: -logit)
    assert math.isclose(grads[False], 0.7 * math.exp(-1.0), rel_tol=1e-5), f"upstream gradient {grads[False]}"
    assert grads[True] == 0.0, "with detach_centerness_target the box gets no gradient from the centerness loss"
