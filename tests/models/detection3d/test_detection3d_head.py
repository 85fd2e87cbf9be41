"""Sparse4DHead: layer list from operation_order, decoupled attention, init quirks, forward/loss outputs."""
import math

import pytest
import torch
from torch import nn

from tests.models.batch_factory import STAGE1_CONFIG, load_config, make_batch

NUM_DECODER = 2
DET_A, DET_K, MAP_A = 50, 30, 20


def _heads(path=None, full_size_anchors=False):
    import projects.mmdet3d_plugin  # noqa: F401
    from mmdet.models import build_head

    cfg = load_config(path, full_size_anchors=full_size_anchors) if path else load_config()
    torch.manual_seed(0)
    det = build_head(cfg.model.head.det_head)
    mp = build_head(cfg.model.head.map_head)
    det.init_weights()
    mp.init_weights()
    return det, mp


@pytest.fixture(scope="module")
def heads():
    return _heads()


def _features(batch: int = 1, cams: int = 6, channels: int = 256):
    from projects.mmdet3d_plugin import ops

    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 11), (2, 6), (1, 3), (1, 2)]
    maps = [torch.randn(batch, cams, channels, h, w, generator=gen) for h, w in shapes]
    return ops.feature_maps_format(maps)


@pytest.mark.slow
def test_full_config_layer_lists_follow_operation_order():
    det, mp = _heads(STAGE1_CONFIG, full_size_anchors=True)
    assert len(det.layers) == 39 and len(mp.layers) == 41, f"{len(det.layers)} det / {len(mp.layers)} map layers"
    det_types = [type(m).__name__ for m in det.layers[:11]]
    assert det_types == [
        "DeformableFeatureAggregation", "AsymmetricFFN", "LayerNorm", "SparseBox3DRefinementModule",
        "MultiheadFlashAttention", "MultiheadFlashAttention", "LayerNorm",
        "DeformableFeatureAggregation", "AsymmetricFFN", "LayerNorm", "SparseBox3DRefinementModule",
    ], f"det layer types {det_types}"
    assert type(mp.layers[0]).__name__ == "MultiheadFlashAttention" and mp.layers[0].embed_dims == 256, "map gnn"
    assert det.layers[4].embed_dims == 512, "decoupled det attention is 512 wide"
    assert tuple(det.fc_before.weight.shape) == (512, 256) and tuple(det.fc_after.weight.shape) == (256, 512)
    assert isinstance(mp.fc_before, nn.Identity), "map head does not decouple"


def test_unknown_operation_is_refused():
    cfg = load_config()
    import projects.mmdet3d_plugin  # noqa: F401
    from mmdet.models import build_head

    cfg.model.head.map_head.operation_order = ["gnn", "bogus"]
    with pytest.raises(ValueError, match="bogus"):
        build_head(cfg.model.head.map_head)


def test_init_weights_reproduces_upstream_quirks(heads):
    det, _ = heads
    refine = det.layers[3]
    assert torch.allclose(refine.cls_layers[-1].bias, torch.full((10,), -math.log(99)), atol=1e-5), "cls prior"
    fix = det.layers[0].kps_generator.fix_scale
    intended = torch.tensor([[0, 0, 0], [0.45, 0, 0], [-0.45, 0, 0], [0, 0.45, 0], [0, -0.45, 0],
                             [0, 0, 0.45], [0, 0, -0.45]])
    assert not torch.allclose(fix, intended) and fix.abs().max() <= math.sqrt(6 / 10), (
        "upstream xavier-reinitialises the deformable fix_scale (quirk 10)"
    )
    assert torch.all(det.instance_bank.anchor_handler.fix_scale == 0), "the bank's handler is not an op layer"
    assert torch.all(det.instance_bank.instance_feature == 0), "det instance features stay zero"


def test_fix_scale_reinit_can_be_switched_off():
    import projects.mmdet3d_plugin  # noqa: F401
    from mmdet.models import build_head

    cfg = load_config()
    cfg.model.head.det_head.reinit_fix_scale = False
    det = build_head(cfg.model.head.det_head)
    det.init_weights()
    intended = torch.tensor(cfg.model.head.det_head.deformable_model.kps_generator.fix_scale, dtype=torch.float32)
    assert torch.equal(det.layers[0].kps_generator.fix_scale, intended), "configured key-point scales must survive"


def test_decoupled_graph_model_concatenates_embedding_and_projects(heads):
    det, _ = heads
    det.eval()
    feat, pos = torch.randn(1, 5, 256), torch.randn(1, 5, 256)
    out = det.graph_model(5, feat, value=feat, query_pos=pos)
    layer = det.layers[5]
    q = torch.cat([feat, pos], -1)
    expected = det.fc_after(layer(q, q, det.fc_before(feat)))
    assert out.shape == (1, 5, 256) and torch.allclose(out, expected, atol=1e-5), "decoupled gnn semantics"


@pytest.mark.slow
def test_forward_and_loss_outputs(heads):
    det, mp = heads
    det.train()
    mp.train()
    det.instance_bank.reset()
    data = make_batch(batch_size=2, num_gt=(3, 0), num_map_gt=(2, 1))
    feats = _features(batch=2)
    torch.manual_seed(0)
    out = det(feats, data)
    assert len(out["classification"]) == NUM_DECODER and out["classification"][0].shape == (2, DET_A, 10)
    assert out["prediction"][-1].shape == (2, DET_A, 11) and out["quality"][-1].shape == (2, DET_A, 2)
    assert out["instance_feature"].shape == (2, DET_A, 256) and out["instance_id"].shape == (2, DET_A)
    assert det.instance_bank.cached_feature.shape == (2, DET_K, 256), "final instances cached"
    losses = det.loss(out, data)
    expected = {f"det_loss_{t}_{i}" for t in ("cls", "box", "cns", "yns") for i in range(NUM_DECODER)}
    assert set(losses) == expected, f"det loss keys {sorted(losses)}"
    assert all(torch.isfinite(v) for v in losses.values()), f"non-finite det loss {losses}"

    map_out = mp(feats, data)
    assert "instance_id" not in map_out and map_out["prediction"][-1].shape == (2, MAP_A, 40)
    map_losses = mp.loss(map_out, data)
    assert set(map_losses) == {f"map_loss_{t}_{i}" for t in ("cls", "line") for i in range(NUM_DECODER)}
    assert mp.instance_bank.cached_feature is None, "stage-1 map head keeps no temporal cache"

    # second frame: the first K instances after decoder 0 are the cached ones (det temporal path)
    det.eval()
    with torch.no_grad():
        det(feats, make_batch(batch_size=2, frame=1, num_gt=(3, 0)))
    assert det.instance_bank.mask.tolist() == [True, True], "temporal link kept"
