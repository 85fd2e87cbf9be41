"""Map targets: Hungarian line assignment and per-prediction class / polyline targets."""
import itertools

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("scipy")

from mmdet.core.bbox.builder import build_assigner, build_sampler  # noqa: E402

from projects.mmdet3d_plugin.models.map import HungarianLinesAssigner, SparsePoint3DTarget  # noqa: E402
from projects.mmdet3d_plugin.models.map.utils import normalize_line  # noqa: E402

ASSIGNER_CFG = dict(
    type="HungarianLinesAssigner",
    cost=dict(
        type="MapQueriesCost",
        cls_cost=dict(type="FocalLossCost", weight=1.0),
        reg_cost=dict(type="LinesL1Cost", weight=10.0, beta=0.01, permute=True),
    ),
)
SAMPLER_CFG = dict(type="SparsePoint3DTarget", assigner=ASSIGNER_CFG, num_cls=3, num_sample=20, roi_size=(30, 60))


def _line(x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    """Straight 20-point polyline from (x0, y0) to (x1, y1), metres, [20, 2]."""
    t = torch.linspace(0, 1, 20)[:, None]
    return torch.tensor([x0, y0]) * (1 - t) + torch.tensor([x1, y1]) * t


def test_normalize_line_maps_roi_corners_to_unit_square():
    corners = torch.tensor([[-15.0, -30.0, 15.0, 30.0, 0.0, 0.0]])
    out = normalize_line(corners, num_sample=3, roi_size=(30, 60))
    expected = torch.tensor([[0.0, 0.0, 30 / (30 + 1e-5), 60 / (60 + 1e-5), 15 / (30 + 1e-5), 30 / (60 + 1e-5)]])
    assert torch.allclose(out, expected, atol=1e-7), f"normalised corners {out} != {expected}"


def test_assigner_matches_minimum_total_cost_on_toy_case():
    assigner = build_assigner(ASSIGNER_CFG)
    assert isinstance(assigner, HungarianLinesAssigner), "registry did not build HungarianLinesAssigner"
    torch.manual_seed(0)
    preds = dict(lines=torch.rand(4, 6), scores=torch.randn(4, 3))
    gts = dict(lines=torch.rand(3, 2, 6), labels=torch.tensor([0, 2, 1]))
    pred_idx, gt_idx, order = assigner.assign(preds, gts)
    cost, _ = assigner.match_cost(preds, gts)
    best = min(
        itertools.permutations(range(4), 3), key=lambda rows: sum(cost[r, g].item() for g, r in enumerate(rows))
    )
    got = dict(zip(gt_idx.tolist(), pred_idx.tolist()))
    assert [got[g] for g in range(3)] == list(best), f"Hungarian picked {got}, brute force {best}"
    assert order.shape == (4, 3), f"ordering index shape {tuple(order.shape)} != (4, 3)"


def test_assigner_without_gt_assigns_nothing():
    assigner = build_assigner(ASSIGNER_CFG)
    out = assigner.assign(dict(lines=torch.rand(4, 6), scores=torch.randn(4, 3)),
                          dict(lines=torch.zeros(0, 2, 6), labels=torch.zeros(0, dtype=torch.long)))
    assert out == (None, None, None), f"empty GT should give (None, None, None), got {out}"


def test_assigner_survives_nan_predictions():
    assigner = build_assigner(ASSIGNER_CFG)
    lines = torch.rand(3, 6)
    lines[1] = float("nan")
    pred_idx, gt_idx, _ = assigner.assign(dict(lines=lines, scores=torch.randn(3, 3)),
                                          dict(lines=torch.rand(2, 2, 6), labels=torch.tensor([0, 1])))
    assert sorted(pred_idx.tolist()) == [0, 2], f"NaN prediction should be avoided, matched {pred_idx.tolist()}"


def test_sample_gives_class_and_best_ordered_line_targets(open_orderings):
    sampler = build_sampler(SAMPLER_CFG)
    assert isinstance(sampler, SparsePoint3DTarget), "registry did not build SparsePoint3DTarget"
    assert sampler.dn_metas is None and sampler.get_dn_anchors(None, None) is None, "map sampler has no denoising"
    line_a, line_b = _line(-10, -20, -10, 20), _line(5, 0, 12, 25)
    pts_preds = torch.stack([
        torch.stack([_line(0, 0, 1, 1), line_b + 0.1, line_a.flip(0) + 0.05]),  # sample 0
        torch.stack([_line(3, 3, 4, 4), line_a, line_b]),                       # sample 1 (no GT)
    ]).flatten(2)
    cls_preds = torch.zeros(2, 3, 3)
    gt_pts = [
        torch.stack([open_orderings(line_a), open_orderings(line_b)]),  # [2, 38, 20, 2]
        torch.zeros(0, 38, 20, 2),
    ]
    gt_labels = [torch.tensor([1, 2]), torch.zeros(0, dtype=torch.long)]
    cls_target, line_target, weights = sampler.sample(cls_preds, pts_preds, gt_labels, gt_pts)

    assert cls_target.dtype == torch.long and cls_target.shape == (2, 3), "cls target must be long [B, A]"
    assert cls_target.tolist() == [[3, 2, 1], [3, 3, 3]], f"class targets {cls_target.tolist()}"
    assert line_target.shape == weights.shape == (2, 3, 40), "line target / weights must be [B, A, 40]"
    # prediction 2 runs along line_a backwards, so its target is line_a reversed (metres, not normalised)
    assert torch.equal(line_target[0, 2], line_a.flip(0).flatten()), "reversed GT not reordered to the prediction"
    assert torch.equal(line_target[0, 1], line_b.flatten()), "forward GT changed"
    assert (line_target[0, 0] == 0).all() and (line_target[1] == 0).all(), "unmatched targets must be zero"
    expected_w = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])[..., None].expand(-1, -1, 40)
    assert torch.equal(weights, expected_w), "reg weights must be 1 exactly on matched rows"


def test_sample_accepts_flat_orderings_and_numpy_gt(open_orderings):
    sampler = build_sampler(SAMPLER_CFG)
    line = _line(-5, -5, 5, 5)
    pts_preds = torch.stack([line.flip(0), line + 3]).flatten(1)[None]
    gt = open_orderings(line)[None].flatten(2).numpy()  # [1, 38, 40] as a numpy array
    cls_target, line_target, _ = sampler.sample(torch.zeros(1, 2, 3), pts_preds, [torch.tensor([0])], [gt])
    assert cls_target.tolist() == [[0, 3]], f"class targets {cls_target.tolist()}"
    assert torch.equal(line_target[0, 0], line.flip(0).flatten()), "flat-ordering GT not reordered"


def test_sample_without_any_gt_is_all_background():
    sampler = build_sampler(SAMPLER_CFG)
    empty = [torch.zeros(0, 38, 20, 2)] * 2
    labels = [torch.zeros(0, dtype=torch.long)] * 2
    cls_target, line_target, weights = sampler.sample(torch.randn(2, 4, 3), torch.rand(2, 4, 40), labels, empty)
    assert (cls_target == 3).all(), "without GT every prediction is background"
    assert not line_target.any() and not weights.any(), "without GT targets and weights must be zero"


def test_sample_rejects_mismatched_labels_and_lines():
    sampler = build_sampler(SAMPLER_CFG)
    with pytest.raises(ValueError, match="gt_map_labels"):
        sampler.sample(torch.zeros(1, 2, 3), torch.zeros(1, 2, 40), [torch.tensor([0, 1])], [torch.zeros(1, 38, 20, 2)])


def test_batched_sample_equals_per_sample_assign(open_orderings, closed_orderings):
    torch.manual_seed(4)
    sampler = build_sampler(SAMPLER_CFG)
    num_gt = [3, 0, 2]
    gt_pts, gt_labels = [], []
    for g in num_gt:
        lines = [closed_orderings(torch.rand(19, 2) * 20 - 10) if i % 2 else open_orderings(torch.rand(20, 2) * 20 - 10)
                 for i in range(g)]
        gt_pts.append(torch.stack(lines) if lines else torch.zeros(0, 38, 20, 2))
        gt_labels.append(torch.randint(0, 3, (g,)))
    cls_preds, pts_preds = torch.randn(3, 6, 3), torch.rand(3, 6, 40) * 20 - 10
    cls_target, line_target, weights = sampler.sample(cls_preds, pts_preds, gt_labels, gt_pts)
    for b in range(3):
        expected_cls = torch.full((6,), 3)
        expected_line = torch.zeros(6, 40)
        if num_gt[b]:
            gts = dict(lines=sampler.normalize_line(gt_pts[b].flatten(2)), labels=gt_labels[b])
            preds = dict(lines=sampler.normalize_line(pts_preds[b]), scores=cls_preds[b])
            rows, cols, order = sampler.assigner.assign(preds, gts)
            for r, c in zip(rows.tolist(), cols.tolist()):
                expected_cls[r] = gt_labels[b][c]
                expected_line[r] = gt_pts[b][c, order[r, c]].flatten()
        assert torch.equal(cls_target[b], expected_cls), f"sample {b}: batched class targets differ from assign()"
        assert torch.equal(line_target[b], expected_line), f"sample {b}: batched line targets differ from assign()"
        assert torch.equal(weights[b].any(-1), expected_cls != 3), f"sample {b}: weights not on matched rows"


def test_cached_line_normalisation_equals_fresh_per_call_tensors():
    sampler = build_sampler(SAMPLER_CFG)
    line = torch.rand(2, 5, 40, dtype=torch.float64) * 80 - 40
    for dtype in (torch.float32, torch.float64, torch.float32):  # the second float32 call reuses the cache
        x = line.to(dtype)
        points = x.reshape(2, 5, 20, 2)
        extent = x.new_tensor([30.0, 60.0])
        expected = ((points + extent / 2) / (extent + 1e-5)).flatten(-2)
        got = sampler.normalize_line(x)
        assert got.dtype == dtype and torch.equal(got, expected), f"{dtype}: cached normalisation differs"
        assert torch.equal(normalize_line(x, 20, (30, 60)), expected), f"{dtype}: normalize_line differs"
    assert len(sampler._normalizer._constants) == 2, "offset / scale are built once per (device, dtype)"

    fresh = build_sampler(SAMPLER_CFG)
    with torch.inference_mode():  # e.g. a first call during evaluation
        fresh.normalize_line(line.float())
    pred = line.float().requires_grad_()
    fresh.normalize_line(pred).sum().backward()
    assert torch.allclose(pred.grad[0, 0, :2], torch.tensor([1 / (30 + 1e-5), 1 / (60 + 1e-5)])), (
        "gradient still flows after an inference-mode call"
    )
