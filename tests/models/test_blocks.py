"""DeformableFeatureAggregation, DenseDepthNet, AsymmetricFFN and linear_relu_ln."""
import math

import pytest
import torch
from torch import nn

from projects.mmdet3d_plugin.models import blocks
from projects.mmdet3d_plugin.models.blocks import (
    AsymmetricFFN,
    DeformableFeatureAggregation,
    DenseDepthNet,
    linear_relu_ln,
)
from projects.mmdet3d_plugin.models.detection3d import detection3d_blocks  # noqa: F401  registers the kps generator

FIX_SCALE_DET = [[0, 0, 0], [0.45, 0, 0], [-0.45, 0, 0], [0, 0.45, 0], [0, -0.45, 0], [0, 0, 0.45], [0, 0, -0.45]]
IMAGE_W, IMAGE_H = 64.0, 32.0


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def det_dfa() -> DeformableFeatureAggregation:
    return DeformableFeatureAggregation(
        embed_dims=256,
        num_groups=8,
        num_levels=4,
        num_cams=6,
        attn_drop=0.15,
        use_deformable_func=True,
        use_camera_embed=True,
        residual_mode="cat",
        kps_generator=dict(type="SparseBox3DKeyPointsGenerator", num_learnable_pts=6, fix_scale=FIX_SCALE_DET),
    )


def two_cameras() -> torch.Tensor:
    """[1, 2, 4, 4]: camera 0 looks along +x, camera 1 along -x; focal 32 px, principal point (32, 16)."""
    intrinsic = torch.tensor([[32.0, 0, 32], [0, 32, 16], [0, 0, 1]])
    forward = torch.tensor([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    backward = torch.tensor([[0.0, 1, 0], [0, 0, -1], [-1, 0, 0]])
    mats = torch.zeros(1, 2, 4, 4)
    mats[0, 0, :3, :3] = intrinsic @ forward
    mats[0, 1, :3, :3] = intrinsic @ backward
    mats[..., 3, 3] = 1
    return mats


def small_dfa(num_learnable_pts: int = 0, attn_drop: float = 0.0, use_deformable_func: bool = False):
    return DeformableFeatureAggregation(
        embed_dims=16,
        num_groups=2,
        num_levels=2,
        num_cams=2,
        attn_drop=attn_drop,
        use_deformable_func=use_deformable_func,
        use_camera_embed=True,
        residual_mode="add",
        kps_generator=dict(
            type="SparseBox3DKeyPointsGenerator", num_learnable_pts=num_learnable_pts, fix_scale=[[0, 0, 0]]
        ),
    )


def small_inputs(num_anchor: int = 3):
    torch.manual_seed(0)
    anchor = torch.zeros(1, num_anchor, 11)
    anchor[..., 0] = 10.0  # 10 m ahead of camera 0, behind camera 1
    anchor[..., 1] = torch.linspace(-2, 2, num_anchor)
    anchor[..., 7] = 1.0  # cos yaw
    metas = dict(projection_mat=two_cameras(), image_wh=torch.tensor([[[IMAGE_W, IMAGE_H]] * 2]))
    return anchor, metas


def test_linear_relu_ln_layout():
    layers = linear_relu_ln(8, 1, 2, 3)
    kinds = [type(x).__name__ for x in layers]
    assert kinds == ["Linear", "ReLU", "LayerNorm", "Linear", "ReLU", "LayerNorm"], f"wrong layout {kinds}"
    assert layers[0].in_features == 3 and layers[3].in_features == 8, "first Linear takes input_dims, later ones embed"


def test_deformable_parameter_budget_matches_checkpoint():
    dfa = det_dfa()
    assert num_params(dfa) == 247_495, f"deformable layer has {num_params(dfa)} params, checkpoint has 247,495"
    shapes = {k: list(v.shape) for k, v in dfa.state_dict().items()}
    assert len(shapes) == 15, f"expected 15 state-dict entries, got {sorted(shapes)}"
    assert shapes["kps_generator.fix_scale"] == [7, 3], "fix_scale shape"
    assert shapes["camera_encoder.3.weight"] == [256, 256], "camera_encoder index 3 must be the second Linear"
    assert shapes["weights_fc.weight"] == [416, 256], "weights_fc must output groups*levels*points = 416"
    assert not dfa.kps_generator.fix_scale.requires_grad, "fix_scale must be non-trainable"


def test_project_points_hand_computed():
    points = torch.tensor([[[[10.0, 2.0, -1.0]]]])  # [B=1, A=1, P=1, 3]
    uv = DeformableFeatureAggregation.project_points(points, two_cameras(), torch.tensor([[[IMAGE_W, IMAGE_H]] * 2]))
    assert uv.shape == (1, 2, 1, 1, 2), f"project_points shape {tuple(uv.shape)}"
    # camera 0: x_c = -2, y_c = 1, depth 10 -> u = 32 * -0.2 + 32 = 25.6, v = 32 * 0.1 + 16 = 19.2
    assert torch.allclose(uv[0, 0, 0, 0], torch.tensor([25.6 / 64, 19.2 / 32])), f"camera 0 got {uv[0, 0, 0, 0]}"
    assert uv[0, 1, 0, 0].abs().max() > 1e3, "a point behind camera 1 must land far outside the image"


@pytest.mark.parametrize("use_deformable_func", [False, True])
def test_uniform_weights_on_constant_maps_average_in_image_samples(use_deformable_func):
    """Zero-initialised weights_fc gives weights 1/(N*L*P); only camera 0 sees the anchors (2 of 4 samples)."""
    dfa = small_dfa(use_deformable_func=use_deformable_func).eval()
    dfa.init_weight()
    with torch.no_grad():
        dfa.output_proj.weight.copy_(torch.eye(16))
    anchor, metas = small_inputs()
    channel_values = torch.arange(16.0)
    maps = [channel_values.view(1, 1, 16, 1, 1).expand(1, 2, 16, h, w).contiguous() for h, w in ((8, 16), (4, 8))]
    out = dfa(torch.zeros(1, 3, 16), anchor, torch.zeros(1, 3, 16), maps, metas)
    expected = (channel_values / 2).expand(1, 3, 16)
    assert torch.allclose(out, expected, atol=1e-5), f"expected half of each channel value, got {out[0, 0]}"


def test_flat_and_list_features_agree_inside_the_image():
    from projects.mmdet3d_plugin import ops

    dfa = small_dfa(num_learnable_pts=2).eval()
    anchor, metas = small_inputs()
    maps = [torch.randn(1, 2, 16, h, w) for h, w in ((8, 16), (4, 8))]
    feature, embed = torch.randn(1, 3, 16), torch.randn(1, 3, 16)
    out_list = dfa(feature, anchor, embed, maps, metas)
    out_flat = dfa(feature, anchor, embed, ops.feature_maps_format(maps), metas)
    assert torch.allclose(out_list, out_flat, atol=1e-4), "grid_sample path and deformable op disagree"


@pytest.mark.parametrize("flat", [False, True])
def test_deformable_output_shape_and_gradients(flat):
    from projects.mmdet3d_plugin import ops

    dfa = small_dfa(num_learnable_pts=2, attn_drop=0.2).train()
    dfa.residual_mode = "cat"
    anchor, metas = small_inputs()
    maps = [torch.randn(1, 2, 16, h, w, requires_grad=True) for h, w in ((8, 16), (4, 8))]
    feature = torch.randn(1, 3, 16, requires_grad=True)
    out = dfa(feature, anchor, torch.randn(1, 3, 16), ops.feature_maps_format(maps) if flat else maps, metas)
    assert out.shape == (1, 3, 32), f"residual 'cat' output should be [1, 3, 32], got {tuple(out.shape)}"
    assert torch.equal(out[..., 16:], feature), "'cat' mode puts the input feature second"
    out[..., :16].pow(2).sum().backward()
    params = dict(dfa.named_parameters())
    trained = ("weights_fc.weight", "output_proj.weight", "camera_encoder.0.weight", "kps_generator.learnable_fc.weight")
    for name in trained:
        grad = params[name].grad
        assert grad is not None and grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert maps[0].grad is not None and maps[0].grad.abs().sum() > 0, "no gradient reaches the feature maps"


def test_attn_drop_removes_whole_camera_point_pairs_in_training_only():
    dfa = small_dfa(num_learnable_pts=3, attn_drop=0.5)
    anchor, metas = small_inputs(num_anchor=8)
    feature, embed = torch.randn(1, 8, 16), torch.randn(1, 8, 16)
    dfa.eval()
    clean = dfa._get_weights(feature, embed, metas["projection_mat"])
    assert torch.allclose(clean.sum(dim=(2, 3, 4)), torch.ones(1, 8, 2)), "eval weights must sum to 1 per group"
    dfa.train()
    torch.manual_seed(1)
    dropped = dfa._get_weights(feature, embed, metas["projection_mat"])
    kept = dropped != 0
    assert kept.any() and not kept.all(), "with attn_drop=0.5 some but not all pairs should be dropped"
    assert (kept == kept[:, :, :, :1, :, :1]).all(), "a drop must cover all levels and groups of a (camera, point)"
    assert torch.allclose(dropped[kept], clean[kept] * 2), "kept weights must be divided by (1 - attn_drop)"


def test_dense_depth_forward_scales_by_focal():
    net = DenseDepthNet(embed_dims=4, num_depth_layers=2, equal_focal=100)
    assert num_params(DenseDepthNet(embed_dims=256, num_depth_layers=3)) == 771, "depth branch budget is 771"
    for layer in net.depth_layers:
        nn.init.zeros_(layer.weight)
        nn.init.constant_(layer.bias, math.log(2.0))
    maps = [torch.randn(1, 2, 4, 3, 5), torch.randn(1, 2, 4, 2, 2), torch.randn(1, 2, 4, 1, 1)]
    depths = net(maps, focal=torch.tensor([[50.0, 200.0]]))
    assert len(depths) == 2 and depths[0].shape == (2, 1, 3, 5), "one [B*N, 1, h, w] map per depth layer"
    assert torch.allclose(depths[0][0], torch.full((1, 3, 5), 1.0)), "camera 0: exp(log 2) * 50 / 100 = 1"
    assert torch.allclose(depths[1][1], torch.full((1, 2, 2), 4.0)), "camera 1: exp(log 2) * 200 / 100 = 4"


def test_dense_depth_loss_hand_computed():
    net = DenseDepthNet(embed_dims=4, num_depth_layers=2, max_depth=60, loss_weight=0.2)
    pred0 = torch.tensor([[[[1.0, 2.0], [70.0, float("nan")]]]])
    gt0 = torch.tensor([[2.0, 0.0], [50.0, 3.0]])
    pred1, gt1 = torch.tensor([[[[5.0]]]]), torch.tensor([[4.0]])
    loss = net.loss([pred0, pred1], [gt0, gt1])
    # level 0: |1-2| + |clip(70)-50| = 11 over 2 valid pixels x 2 levels; level 1: 1 over 1 x 2
    expected = (11 / 4 + 1 / 2) * 0.2
    assert torch.isclose(loss, torch.tensor(expected)), f"depth loss {loss.item()} != {expected}"
    assert net.loss([pred1], [torch.zeros(1, 1)]).item() == 0.0, "no valid pixel must give zero loss"


def test_ffn_budget_and_identity_rule():
    det_ffn = AsymmetricFFN(in_channels=512, pre_norm=dict(type="LN"), embed_dims=256, feedforward_channels=1024)
    assert num_params(det_ffn) == 920_064, f"det FFN has {num_params(det_ffn)} params, checkpoint has 920,064"
    assert sorted(det_ffn.state_dict()) == sorted(
        f"{m}.{p}" for m in ("pre_norm", "layers.0.0", "layers.1", "identity_fc") for p in ("weight", "bias")
    ), "FFN state-dict keys differ from upstream"
    # quirk: in == embed but hidden != embed still gets a Linear identity (motion head FFN, 329,216 params)
    motion_ffn = AsymmetricFFN(in_channels=256, pre_norm=dict(type="LN"), embed_dims=256, feedforward_channels=512)
    assert isinstance(motion_ffn.identity_fc, nn.Linear), "identity_fc must be a Linear when hidden != embed_dims"
    assert num_params(motion_ffn) == 329_216, f"motion FFN has {num_params(motion_ffn)} params, expected 329,216"
    square = AsymmetricFFN(in_channels=8, embed_dims=8, feedforward_channels=8)
    assert isinstance(square.identity_fc, nn.Identity), "identity_fc is an identity only when all widths match"


def test_ffn_forward_adds_projected_normalised_input():
    torch.manual_seed(0)
    ffn = AsymmetricFFN(in_channels=8, pre_norm=dict(type="LN"), embed_dims=4, feedforward_channels=6, ffn_drop=0.5)
    ffn.eval()
    x = torch.randn(2, 3, 8)
    normed = ffn.pre_norm(x)
    expected = ffn.identity_fc(normed) + ffn.layers(normed)
    assert torch.allclose(ffn(x), expected), "FFN output must be identity_fc(LN(x)) + layers(LN(x))"


def test_registered_under_upstream_type_names():
    from mmcv.cnn.bricks.registry import ATTENTION, FEEDFORWARD_NETWORK, PLUGIN_LAYERS

    assert ATTENTION.get("DeformableFeatureAggregation") is blocks.DeformableFeatureAggregation, "ATTENTION name"
    assert PLUGIN_LAYERS.get("DenseDepthNet") is blocks.DenseDepthNet, "PLUGIN_LAYERS name"
    assert FEEDFORWARD_NETWORK.get("AsymmetricFFN") is blocks.AsymmetricFFN, "FEEDFORWARD_NETWORK name"
