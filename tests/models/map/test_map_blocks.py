"""Map head blocks: polyline anchor encoder, refinement layer, keypoint generator."""
import math

import pytest
import torch

mmcv = pytest.importorskip("mmcv")

from mmcv.cnn.bricks.registry import PLUGIN_LAYERS, POSITIONAL_ENCODING  # noqa: E402
from mmcv.utils import build_from_cfg  # noqa: E402

from projects.mmdet3d_plugin.models.map import (  # noqa: E402
    SparsePoint3DEncoder,
    SparsePoint3DKeyPointsGenerator,
    SparsePoint3DRefinementModule,
)

# Upstream "small" config values for the map head (spec section 4).
MAP_KPS_CFG = dict(
    type="SparsePoint3DKeyPointsGenerator",
    embed_dims=256,
    num_sample=20,
    num_learnable_pts=3,
    fix_height=(0, 0.5, -0.5, 1, -1),
    ground_height=-1.84023,
)


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _shapes(module: torch.nn.Module) -> dict:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_encoder_embeds_each_polyline_to_normalised_channels():
    torch.manual_seed(0)
    encoder = SparsePoint3DEncoder(embed_dims=16, num_sample=4, coords_dim=2)
    anchor = torch.randn(2, 5, 8) * 10
    embed = encoder(anchor)
    assert embed.shape == (2, 5, 16), f"encoder output shape {tuple(embed.shape)} != (2, 5, 16)"
    # The last block is a LayerNorm with unit weight at construction: zero mean per instance.
    assert torch.allclose(embed.mean(-1), torch.zeros(2, 5), atol=1e-5), "encoder output is not layer-normalised"
    single = encoder(anchor[:1, 2:3])
    assert torch.allclose(single, embed[:1, 2:3], atol=1e-5), "an instance's embedding depends on others"


def test_encoder_rejects_wrong_anchor_width():
    encoder = SparsePoint3DEncoder(embed_dims=16, num_sample=4, coords_dim=2)
    with pytest.raises(ValueError, match="last dim 8"):
        encoder(torch.zeros(1, 3, 6))


def test_encoder_parameters_match_checkpoint_layout():
    encoder = build_from_cfg(
        dict(type="SparsePoint3DEncoder", embed_dims=256, num_sample=20, coords_dim=2), POSITIONAL_ENCODING
    )
    assert _num_params(encoder) == 77_312, f"anchor encoder has {_num_params(encoder)} params, spec 77,312"
    expected = {
        "pos_fc.0.weight": [256, 40], "pos_fc.0.bias": [256],
        "pos_fc.2.weight": [256], "pos_fc.2.bias": [256],
        "pos_fc.3.weight": [256, 256], "pos_fc.3.bias": [256],
        "pos_fc.5.weight": [256], "pos_fc.5.bias": [256],
    }
    assert _shapes(encoder) == expected, f"anchor encoder state dict {_shapes(encoder)} differs from checkpoint"


def test_refine_parameters_match_checkpoint_layout():
    refine = build_from_cfg(
        dict(type="SparsePoint3DRefinementModule", embed_dims=256, num_sample=20, num_cls=3), PLUGIN_LAYERS
    )
    assert _num_params(refine) == 407_891, f"refine has {_num_params(refine)} params, spec 407,891"
    assert _num_params(refine.layers) == 274_512, f"refine.layers has {_num_params(refine.layers)}, spec 274,512"
    assert _num_params(refine.cls_layers) == 133_379, f"cls_layers has {_num_params(refine.cls_layers)}, spec 133,379"
    shapes = _shapes(refine)
    assert len(shapes) == 25, f"refine has {len(shapes)} state-dict entries, checkpoint has 25"
    expected = {
        "layers.0.weight": [256, 256], "layers.4.weight": [256], "layers.9.bias": [256],
        "layers.10.weight": [40, 256], "layers.10.bias": [40], "layers.11.scale": [40],
        "cls_layers.0.weight": [256, 256], "cls_layers.5.weight": [256],
        "cls_layers.6.weight": [3, 256], "cls_layers.6.bias": [3],
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, f"refine {key}: {shapes.get(key)} != checkpoint {shape}"


def test_refine_adds_predicted_offsets_to_every_anchor_coordinate():
    torch.manual_seed(0)
    refine = SparsePoint3DRefinementModule(embed_dims=16, num_sample=4, coords_dim=2, num_cls=3)
    offset = torch.arange(8, dtype=torch.float32) - 3.5
    with torch.no_grad():
        refine.layers[10].weight.zero_()
        refine.layers[10].bias.copy_(offset)
        refine.layers[11].scale.fill_(0.5)
    feature, embed, anchor = torch.randn(2, 5, 16), torch.randn(2, 5, 16), torch.randn(2, 5, 8) * 10
    points, cls, quality = refine(feature, anchor, embed, time_interval=torch.tensor([0.5, 0.5]))
    assert torch.allclose(points, anchor + 0.5 * offset), "refined polyline != anchor + scale * offset"
    assert cls.shape == (2, 5, 3), f"class logits shape {tuple(cls.shape)} != (2, 5, 3)"
    assert quality is None, "the map refinement must not predict quality"
    _, cls_other_embed, _ = refine(feature, anchor, embed * 3)
    assert torch.equal(cls, cls_other_embed), "classification must not depend on the anchor embedding"
    _, no_cls, _ = refine(feature, anchor, embed, return_cls=False)
    assert no_cls is None, "return_cls=False still returned logits"


def test_refine_init_sets_focal_prior_on_class_bias():
    refine = SparsePoint3DRefinementModule(embed_dims=16, num_sample=4, num_cls=3)
    refine.init_weight()
    expected = -math.log((1 - 0.01) / 0.01)
    assert torch.allclose(refine.cls_layers[-1].bias, torch.full((3,), expected)), "class bias is not -log(99)"


def test_keypoints_config_has_300_points_and_checkpoint_layout():
    kps = build_from_cfg(dict(MAP_KPS_CFG), PLUGIN_LAYERS)
    assert kps.num_pts == 300, f"num_pts {kps.num_pts} != 20 * 5 * 3"
    assert _shapes(kps) == {"learnable_fc.weight": [600, 256], "learnable_fc.bias": [600]}, "kps state dict differs"
    assert _num_params(kps) == 154_200, f"learnable_fc has {_num_params(kps)} params, spec 154,200"


def test_keypoints_are_anchor_points_plus_offsets_at_fixed_heights():
    kps = SparsePoint3DKeyPointsGenerator(
        embed_dims=4, num_sample=2, num_learnable_pts=2, fix_height=(0.0, 1.0), ground_height=-2.0
    )
    # offsets indexed [sample, height, learnable point, xy]; a zero weight makes them the bias.
    offsets = torch.arange(16, dtype=torch.float32).reshape(2, 2, 2, 2) / 10
    with torch.no_grad():
        kps.learnable_fc.weight.zero_()
        kps.learnable_fc.bias.copy_(offsets.flatten())
    anchor = torch.tensor([[[1.0, 2.0, -3.0, 4.0]]])  # one polyline: (1, 2), (-3, 4)
    points = kps(anchor, torch.randn(1, 1, 4))
    assert points.shape == (1, 1, 8, 3), f"keypoints shape {tuple(points.shape)} != (1, 1, 8, 3)"
    expected = []
    for s, base in enumerate([(1.0, 2.0), (-3.0, 4.0)]):
        for h, height in enumerate([-2.0, -1.0]):
            for p in range(2):
                expected.append([base[0] + offsets[s, h, p, 0], base[1] + offsets[s, h, p, 1], height])
    assert torch.allclose(points[0, 0], torch.tensor(expected)), "keypoints are not point-major, height, offset"


def test_keypoints_without_learnable_points_refuse_forward():
    kps = SparsePoint3DKeyPointsGenerator()
    assert kps.num_pts == 0 and len(list(kps.parameters())) == 0, "anchor handler must have no parameters"
    with pytest.raises(ValueError, match="num_learnable_pts"):
        kps(torch.zeros(1, 2, 40), torch.zeros(1, 2, 256))


def test_anchor_projection_applies_2d_rigid_transform_per_sample():
    kps = SparsePoint3DKeyPointsGenerator(num_sample=2)
    anchor = torch.tensor([[[1.0, 0.0, 0.0, 2.0]], [[1.0, 0.0, 0.0, 2.0]]])
    rot90 = torch.eye(4)
    rot90[:2, :2] = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    rot90[:3, 3] = torch.tensor([10.0, 20.0, 99.0])
    transform = torch.stack([torch.eye(4), rot90]).double()
    (projected,) = kps.anchor_projection(anchor, [transform], time_intervals=[torch.tensor([-0.5, -0.5])])
    assert projected.dtype == anchor.dtype, "projection must keep the anchor dtype"
    assert torch.equal(projected[0], anchor[0]), "identity transform moved the anchor"
    expected = torch.tensor([[10.0, 21.0, 8.0, 20.0]])  # (1,0)->(0,1)+t, (0,2)->(-2,0)+t; z ignored
    assert torch.allclose(projected[1], expected), f"rotated anchor {projected[1]} != {expected}"


def test_map_keypoints_drive_deformable_aggregation_with_checkpoint_sizes():
    from mmcv.cnn.bricks.registry import ATTENTION

    pytest.importorskip("projects.mmdet3d_plugin.models.blocks")
    cfg = dict(
        type="DeformableFeatureAggregation", embed_dims=256, num_groups=8, num_levels=4, num_cams=6,
        attn_drop=0.15, use_deformable_func=True, use_camera_embed=True, residual_mode="cat",
        kps_generator=dict(MAP_KPS_CFG),
    )
    layer = build_from_cfg(cfg, ATTENTION)
    assert _num_params(layer) == 2_757_336, f"map deformable layer has {_num_params(layer)} params, spec 2,757,336"
    assert list(layer.weights_fc.weight.shape) == [9600, 256], "weights_fc must give 8 groups x 4 levels x 300 pts"
