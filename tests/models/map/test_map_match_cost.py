"""Map matching costs: permutation-aware polyline L1 cost and the combined queries cost."""
import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.core.bbox.match_costs import build_match_cost  # noqa: E402

from projects.mmdet3d_plugin.models.map import LinesL1Cost, MapQueriesCost  # noqa: E402

UPSTREAM_COST = dict(
    type="MapQueriesCost",
    cls_cost=dict(type="FocalLossCost", weight=1.0),
    reg_cost=dict(type="LinesL1Cost", weight=10.0, beta=0.01, permute=True),
)


def _smooth_l1(x: torch.Tensor, beta: float) -> torch.Tensor:
    x = x.abs()
    return torch.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


def test_l1_cost_hand_computed():
    # Two points per line (D = 4): |diff| = (1, 2, 0, 1) -> sum 4, / 2 points = 2, * weight 3 = 6.
    cost = LinesL1Cost(weight=3.0, beta=0.0)(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[1.0, 2.0, 1.0, 0.0]]))
    assert torch.allclose(cost, torch.tensor([[6.0]])), f"plain L1 cost {cost} != 6"


def test_smooth_l1_cost_takes_best_ordering_and_reports_it():
    pred = torch.tensor([[0.0, 0.0, 0.1, 0.0]])
    gt = torch.tensor([[[0.1, 0.0, 0.0, 0.0], [0.0, 0.0, 0.1, 0.005]]])  # ordering 1 is 0.005 away in one coord
    cost, order = LinesL1Cost(weight=10.0, beta=0.01, permute=True)(pred, gt)
    expected = 10.0 * (0.5 * 0.005**2 / 0.01) / 2
    assert order.tolist() == [[1]], f"best ordering {order.tolist()} != [[1]]"
    assert torch.allclose(cost, torch.tensor([[expected]])), f"smooth-L1 cost {cost} != {expected}"


def test_reversed_open_polyline_matches_at_zero_cost(open_orderings):
    torch.manual_seed(0)
    line = torch.rand(20, 2)
    gt = open_orderings(line.flip(0))  # annotated in the opposite direction: row 1 is the prediction's order
    cost, order = LinesL1Cost(weight=10.0, beta=0.01, permute=True)(line.flatten()[None], gt.flatten(1)[None])
    assert cost.item() == 0.0, f"reversed GT should match at zero cost, got {cost.item()}"
    assert order.item() == 1, f"picked ordering {order.item()}, expected the reversal (1)"


@pytest.mark.parametrize("reverse, shift", [(False, 0), (False, 7), (True, 0), (True, 12)])
def test_cyclically_shifted_closed_polyline_matches_at_zero_cost(closed_orderings, reverse, shift):
    torch.manual_seed(1)
    ring = torch.rand(19, 2)
    gt = closed_orderings(ring)
    start = ring.flip(0) if reverse else ring
    pred_points = torch.roll(start, -shift, dims=0)
    pred = torch.cat([pred_points, pred_points[:1]]).flatten()[None]
    cost, order = LinesL1Cost(weight=10.0, beta=0.01, permute=True)(pred, gt.flatten(1)[None])
    assert cost.item() == 0.0, f"closed GT shifted by {shift} (reverse={reverse}) costs {cost.item()}"
    assert order.item() == 19 * reverse + shift, f"picked ordering {order.item()}, expected {19 * reverse + shift}"


def test_vectorised_cost_equals_per_pair_loop():
    torch.manual_seed(2)
    pred, gt = torch.rand(5, 8), torch.rand(3, 4, 8)
    cost, order = LinesL1Cost(weight=10.0, beta=0.01, permute=True)(pred, gt)
    for a in range(5):
        for g in range(3):
            per_order = torch.stack([_smooth_l1(pred[a] - gt[g, k], 0.01).sum() / 4 * 10 for k in range(4)])
            assert torch.allclose(cost[a, g], per_order.min()), f"cost[{a}, {g}] differs from the loop"
            assert order[a, g] == per_order.argmin(), f"ordering[{a}, {g}] differs from the loop"


def test_cost_rejects_gt_without_ordering_axis_when_permuting():
    with pytest.raises(ValueError, match="3-D"):
        LinesL1Cost(permute=True)(torch.zeros(2, 4), torch.zeros(3, 4))


def test_queries_cost_is_focal_cost_plus_line_cost():
    torch.manual_seed(3)
    cost_fn = build_match_cost(UPSTREAM_COST)
    assert isinstance(cost_fn, MapQueriesCost), "registry did not build MapQueriesCost"
    scores, labels = torch.randn(4, 3), torch.tensor([2, 0])
    lines, gt_lines = torch.rand(4, 6), torch.rand(2, 2, 6)
    cost, order = cost_fn(dict(scores=scores, lines=lines), dict(labels=labels, lines=gt_lines))
    p = scores.sigmoid()[:, labels]
    focal = -(p + 1e-12).log() * 0.25 * (1 - p) ** 2 + (1 - p + 1e-12).log() * 0.75 * p**2
    line_cost, line_order = LinesL1Cost(weight=10.0, beta=0.01, permute=True)(lines, gt_lines)
    assert torch.allclose(cost, focal + line_cost, atol=1e-6), "total cost != focal cost + line cost"
    assert torch.equal(order, line_order), "queries cost changed the best ordering"
    reg_only, _ = cost_fn(dict(scores=scores, lines=lines), dict(labels=labels, lines=gt_lines), True)
    assert torch.allclose(reg_only, line_cost), "ignore_cls_cost must leave only the line cost"
