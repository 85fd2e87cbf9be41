"""SparseBox3DEncoder, SparseBox3DRefinementModule, SparseBox3DKeyPointsGenerator (incl. anchor projection)."""
import math

import torch
from torch import nn

from projects.mmdet3d_plugin.models.detection3d.detection3d_blocks import (
    SparseBox3DEncoder,
    SparseBox3DKeyPointsGenerator,
    SparseBox3DRefinementModule,
)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def det_encoder() -> SparseBox3DEncoder:
    return SparseBox3DEncoder(
        embed_dims=[128, 32, 32, 64], vel_dims=3, mode="cat", output_fc=False, in_loops=1, out_loops=4
    )


def make_anchor(center, size, yaw, vel=(0.0, 0.0, 0.0)):
    """One [1, 1, 11] state from a centre, metric sizes, yaw (radians) and velocity."""
    state = list(center) + [math.log(s) for s in size] + [math.sin(yaw), math.cos(yaw)] + list(vel)
    return torch.tensor(state).view(1, 1, 11)


def test_anchor_encoder_budget_and_layout():
    encoder = det_encoder()
    assert num_params(encoder) == 71_392, f"anchor encoder has {num_params(encoder)} params, checkpoint 71,392"
    keys = encoder.state_dict()
    assert len(keys) == 64, f"expected 64 state-dict entries, got {len(keys)}"
    assert keys["pos_fc.11.weight"].shape == (128,) and keys["vel_fc.9.weight"].shape == (64, 64), "branch layout"


def test_anchor_encoder_concatenates_parts_in_order():
    torch.manual_seed(0)
    encoder = det_encoder().eval()
    anchor = torch.randn(2, 5, 11)
    out = encoder(anchor)
    assert out.shape == (2, 5, 256), f"embedding shape {tuple(out.shape)}"
    moved = anchor.clone()
    moved[..., 3:6] += 1.0  # change only the size
    changed = (encoder(moved) - out).abs().amax(dim=(0, 1)) > 0
    assert changed[128:160].all() and not changed[:128].any() and not changed[160:].any(), (
        "a size change must only touch the size slice [128:160]"
    )


def test_refine_budget_matches_checkpoint():
    refine = SparseBox3DRefinementModule(embed_dims=256, num_cls=10, refine_yaw=True, with_quality_estimation=True)
    assert num_params(refine) == 535_330, f"refine has {num_params(refine)} params, checkpoint has 535,330"
    assert len(refine.state_dict()) == 35, "refine must have 35 state-dict entries"
    refine.init_weight()
    assert torch.allclose(refine.cls_layers[-1].bias, torch.full((10,), -math.log(99))), "cls bias prior 0.01"


def fixed_delta_refine(delta: torch.Tensor, refine_yaw: bool) -> SparseBox3DRefinementModule:
    refine = SparseBox3DRefinementModule(embed_dims=8, num_cls=3, refine_yaw=refine_yaw, with_quality_estimation=True)
    with torch.no_grad():
        refine.layers[10].weight.zero_()
        refine.layers[10].bias.copy_(delta)
    return refine.eval()


def test_refine_residual_and_velocity_over_time_interval():
    delta = torch.arange(1.0, 12.0)
    anchor = torch.randn(2, 4, 11)
    feature, embed = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    dt = torch.tensor([0.5, 2.0])
    box, cls, quality = fixed_delta_refine(delta, refine_yaw=True)(feature, anchor, embed, time_interval=dt)
    assert box.shape == (2, 4, 11) and cls.shape == (2, 4, 3) and quality.shape == (2, 4, 2), "output shapes"
    assert torch.allclose(box[..., :8], anchor[..., :8] + delta[:8]), "x..cos_yaw must be anchor + delta"
    expected_vel = anchor[..., 8:] + delta[8:] / dt.view(2, 1, 1)
    assert torch.allclose(box[..., 8:], expected_vel), "velocity must be delta / dt + anchor velocity"

    box_no_yaw, _, _ = fixed_delta_refine(delta, refine_yaw=False)(feature, anchor, embed, time_interval=dt)
    assert torch.allclose(box_no_yaw[..., 6:8], delta[6:8].expand(2, 4, 2)), "without refine_yaw yaw is not residual"


def test_refine_cls_ignores_anchor_embedding_but_quality_uses_it():
    torch.manual_seed(0)
    refine = SparseBox3DRefinementModule(embed_dims=8, num_cls=3, with_quality_estimation=True).eval()
    feature, anchor = torch.randn(1, 4, 8), torch.randn(1, 4, 11)
    _, cls_a, q_a = refine(feature, anchor, torch.zeros(1, 4, 8))
    _, cls_b, q_b = refine(feature, anchor, torch.randn(1, 4, 8))
    assert torch.equal(cls_a, cls_b), "class logits must come from the instance feature alone"
    assert not torch.allclose(q_a, q_b), "quality logits must depend on the anchor embedding"


def test_keypoints_fixed_points_on_rotated_box():
    generator = SparseBox3DKeyPointsGenerator(
        embed_dims=8, num_learnable_pts=1, fix_scale=[[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    )
    nn.init.zeros_(generator.learnable_fc.weight)
    nn.init.zeros_(generator.learnable_fc.bias)
    anchor = make_anchor((1.0, 2.0, 3.0), (4.0, 2.0, 1.0), math.pi / 2)
    points = generator(anchor, torch.randn(1, 1, 8))
    assert generator.num_pts == 5 and points.shape == (1, 1, 5, 3), f"key points shape {tuple(points.shape)}"
    # local (2, 0, 0) -> (0, 2, 0), (0, 1, 0) -> (-1, 0, 0) after a 90 degree yaw; zero learnable offset = centre
    expected = torch.tensor([[1.0, 2.0, 3.0], [1.0, 4.0, 3.0], [0.0, 2.0, 3.0], [1.0, 2.0, 3.5], [1.0, 2.0, 3.0]])
    assert torch.allclose(points[0, 0], expected, atol=1e-5), f"key points {points[0, 0]}"
    assert torch.allclose(generator(anchor)[0, 0], expected[:4], atol=1e-5), "no feature -> fixed points only"


def test_anchor_projection_identity_keeps_anchors():
    anchor = torch.randn(2, 6, 11)
    projected = SparseBox3DKeyPointsGenerator.anchor_projection(anchor, [torch.eye(4).expand(2, 4, 4)])
    assert len(projected) == 1 and torch.allclose(projected[0], anchor), "identity transform must not move anchors"


def test_anchor_projection_translation_and_rotation():
    anchor = make_anchor((1.0, 2.0, 3.0), (4.0, 2.0, 1.0), 0.0, vel=(1.0, 0.5, 0.0))
    shift = torch.eye(4)[None].clone()
    shift[0, :3, 3] = torch.tensor([10.0, -1.0, 0.5])
    moved = SparseBox3DKeyPointsGenerator.anchor_projection(anchor, [shift])[0]
    assert torch.allclose(moved[..., :3], torch.tensor([11.0, 1.0, 3.5])), "translation must shift the centre"
    assert torch.allclose(moved[..., 3:], anchor[..., 3:]), "translation keeps size, yaw and velocity"

    rot = torch.eye(4)[None].clone()
    rot[0, :2, :2] = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # +90 degrees about z
    turned = SparseBox3DKeyPointsGenerator.anchor_projection(anchor, [rot])[0]
    expected = make_anchor((-2.0, 1.0, 3.0), (4.0, 2.0, 1.0), math.pi / 2, vel=(-0.5, 1.0, 0.0))
    assert torch.allclose(turned, expected, atol=1e-6), f"rotation: got {turned}, expected {expected}"


def test_anchor_projection_moves_centres_by_velocity_times_dt_per_sample():
    anchor = torch.zeros(2, 1, 11)
    anchor[:, 0, 8:] = torch.tensor([2.0, -1.0, 0.0])
    dt = torch.tensor([0.5, 1.5])
    # the instance bank passes -dt: centre - velocity * (-dt) = centre + velocity * dt
    identity = [torch.eye(4).expand(2, 4, 4)]
    out = SparseBox3DKeyPointsGenerator.anchor_projection(anchor, identity, time_intervals=[-dt])[0]
    expected = torch.tensor([[1.0, -0.5, 0.0], [3.0, -1.5, 0.0]])
    assert torch.allclose(out[:, 0, :3], expected), f"centres should move by velocity * dt, got {out[:, 0, :3]}"
    by_time = SparseBox3DKeyPointsGenerator.anchor_projection(
        anchor, [torch.eye(4).expand(2, 4, 4)], src_timestamp=torch.tensor([10.0, 10.0]), dst_timestamps=[10.0 + dt]
    )[0]
    assert torch.allclose(by_time, out), "timestamps must give the same interval t = src - dst"


def test_bank_anchor_handler_defaults():
    handler = SparseBox3DKeyPointsGenerator()
    assert handler.num_pts == 1 and handler.fix_scale.shape == (1, 3), "default handler has one fixed centre point"
    assert handler.distance(torch.tensor([[3.0, 4.0, 7.0]])).item() == 5.0, "distance is horizontal"
