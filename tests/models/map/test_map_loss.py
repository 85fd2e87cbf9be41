"""Map line loss: ROI normalisation + smooth-L1 per coordinate, averaged per point."""
import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.models.builder import build_loss  # noqa: E402

from projects.mmdet3d_plugin.models.map import LinesL1Loss, SparseLineLoss  # noqa: E402

LOSS_CFG = dict(
    type="SparseLineLoss",
    loss_line=dict(type="LinesL1Loss", loss_weight=10.0, beta=0.01),
    num_sample=20,
    roi_size=(30, 60),
)


def _loss(line, target, num_pos):
    loss_fn = build_loss(LOSS_CFG)
    assert isinstance(loss_fn, SparseLineLoss), "registry did not build SparseLineLoss"
    out = loss_fn(line, target, weight=torch.ones_like(line), avg_factor=num_pos, prefix="map_", suffix="_0")
    assert list(out) == ["map_loss_line_0"], f"loss keys {list(out)} != ['map_loss_line_0']"
    return out["map_loss_line_0"]


def test_perfect_prediction_gives_zero():
    target = torch.rand(3, 40) * 20 - 10
    assert _loss(target.clone(), target, 3.0).item() == 0.0, "a perfect prediction must cost nothing"


@pytest.mark.parametrize("shift_x, shift_y", [(3.0, 0.0), (0.0, 6.0), (0.15, 0.0)])
def test_uniform_shift_gives_formula_value(shift_x, shift_y):
    target = torch.rand(4, 20, 2) * 20 - 10
    line = target + torch.tensor([shift_x, shift_y])
    loss = _loss(line.flatten(1), target.flatten(1), 4.0)

    def smooth_l1(d):
        return 0.5 * d * d / 0.01 if d < 0.01 else d - 0.5 * 0.01

    # Each of 4 lines x 20 points contributes smooth_l1 of the normalised shift per coordinate;
    # sum / num_pos (4) / num_points (20) * loss_weight (10).
    per_point = smooth_l1(shift_x / (30 + 1e-5)) + smooth_l1(shift_y / (60 + 1e-5))
    expected = 4 * 20 * per_point / 4 / 20 * 10
    assert loss.item() == pytest.approx(expected, rel=1e-3), f"loss {loss.item()} != formula {expected}"


def test_weights_and_avg_factor_scale_the_loss():
    torch.manual_seed(0)
    line, target = torch.rand(2, 40), torch.rand(2, 40)
    loss_fn = LinesL1Loss(loss_weight=10.0, beta=0.01)
    full = loss_fn(line, target, weight=torch.ones(2, 40), avg_factor=2.0)
    half = loss_fn(line, target, weight=torch.cat([torch.ones(1, 40), torch.zeros(1, 40)]), avg_factor=2.0)
    d = (line - target).abs()
    per = torch.where(d < 0.01, 0.5 * d * d / 0.01, d - 0.005)
    assert full.item() == pytest.approx(per.sum().item() / 2 / 20 * 10, rel=1e-5), "weighted sum / avg / points"
    assert half.item() == pytest.approx(per[0].sum().item() / 2 / 20 * 10, rel=1e-5), "zero weight must drop a row"


def test_no_positive_instances_gives_zero_with_gradient():
    line = torch.zeros(0, 40, requires_grad=True)
    loss = _loss(line, torch.zeros(0, 40), 1.0)
    loss.backward()
    assert loss.item() == 0.0 and line.grad is not None, "empty input must give a differentiable zero"
