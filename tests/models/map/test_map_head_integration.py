"""The map parts inside the shared Sparse4DHead: forward, targets + losses, post-processing (tiny sizes)."""
import numpy as np
import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("projects.mmdet3d_plugin.models.detection3d")

from mmdet.models import build_head  # noqa: E402

import projects.mmdet3d_plugin  # noqa: E402,F401

C, S, A, B = 32, 20, 8, 2


def _head_cfg() -> dict:
    offsets = np.linspace(-4, 4, S)
    centres = np.random.RandomState(0).uniform(-10, 10, (A, 2))
    anchor = np.stack([np.stack([np.full(S, cx), cy + offsets], -1) for cx, cy in centres])  # [A, S, 2]
    return dict(
        type="Sparse4DHead",
        cls_threshold_to_reg=0.0,  # supervise every match, whatever its score
        decouple_attn=False,
        instance_bank=dict(
            type="InstanceBank", num_anchor=A, embed_dims=C, anchor=anchor, num_temp_instances=0,
            anchor_handler=dict(type="SparsePoint3DKeyPointsGenerator"), confidence_decay=0.6, feat_grad=True,
        ),
        anchor_encoder=dict(type="SparsePoint3DEncoder", embed_dims=C, num_sample=S),
        num_single_frame_decoder=1,
        num_decoder=2,
        operation_order=["gnn", "norm", "deformable", "ffn", "norm", "refine"] * 2,
        graph_model=dict(type="MultiheadFlashAttention", embed_dims=C, num_heads=4, batch_first=True, dropout=0.1),
        norm_layer=dict(type="LN", normalized_shape=C),
        ffn=dict(
            type="AsymmetricFFN", in_channels=C * 2, pre_norm=dict(type="LN"), embed_dims=C,
            feedforward_channels=C * 4, num_fcs=2, ffn_drop=0.1, act_cfg=dict(type="ReLU", inplace=True),
        ),
        deformable_model=dict(
            type="DeformableFeatureAggregation", embed_dims=C, num_groups=4, num_levels=1, num_cams=2,
            attn_drop=0.15, use_deformable_func=False, use_camera_embed=True, residual_mode="cat",
            kps_generator=dict(
                type="SparsePoint3DKeyPointsGenerator", num_sample=S, num_learnable_pts=1,
                fix_height=(0, 0.5), ground_height=-1.84023,
            ),
        ),
        refine_layer=dict(type="SparsePoint3DRefinementModule", embed_dims=C, num_sample=S, num_cls=3),
        sampler=dict(
            type="SparsePoint3DTarget",
            assigner=dict(
                type="HungarianLinesAssigner",
                cost=dict(
                    type="MapQueriesCost",
                    cls_cost=dict(type="FocalLossCost", weight=1.0),
                    reg_cost=dict(type="LinesL1Cost", weight=10.0, beta=0.01, permute=True),
                ),
            ),
            num_cls=3, num_sample=S, roi_size=(30, 60),
        ),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_reg=dict(
            type="SparseLineLoss", loss_line=dict(type="LinesL1Loss", loss_weight=10.0, beta=0.01),
            num_sample=S, roi_size=(30, 60),
        ),
        decoder=dict(type="SparsePoint3DDecoder"),
        reg_weights=[1.0] * 40,
        gt_cls_key="gt_map_labels", gt_reg_key="gt_map_pts", gt_id_key="map_instance_id",
        with_instance_id=False, task_prefix="map",
    )


def _inputs(open_orderings) -> tuple:
    feature_maps = [torch.randn(B, 2, C, 4, 8)]
    projection = torch.eye(4).repeat(B, 2, 1, 1)
    projection[..., 0, 2], projection[..., 2, 3] = 1.0, 5.0
    metas = dict(
        projection_mat=projection, image_wh=torch.tensor([[32.0, 16.0]]).repeat(B, 2, 1), timestamp=torch.zeros(B),
        img_metas=[dict(T_global=np.eye(4), T_global_inv=np.eye(4), timestamp=0.0) for _ in range(B)],
    )
    lines = torch.rand(3, S, 2) * 20 - 10
    data = dict(
        metas,
        gt_map_labels=[torch.tensor([0, 1, 2]), torch.zeros(0, dtype=torch.long)],
        gt_map_pts=[torch.stack([open_orderings(x) for x in lines]), torch.zeros(0, 38, S, 2)],
    )
    return feature_maps, metas, data


def test_map_head_trains_and_decodes(open_orderings):
    torch.manual_seed(0)
    head = build_head(_head_cfg())
    head.init_weights()
    feature_maps, metas, data = _inputs(open_orderings)

    head.train()
    losses = head.loss(head(feature_maps, data), data)
    expected_keys = {f"map_loss_{kind}_{i}" for kind in ("cls", "line") for i in range(2)}
    assert set(losses) == expected_keys, f"loss keys {sorted(losses)} != {sorted(expected_keys)}"
    for key, value in losses.items():
        assert torch.isfinite(value) and value > 0, f"{key} = {value.item()} should be finite and positive"
    sum(losses.values()).backward()
    refine = head.layers[-1]
    assert refine.layers[10].weight.grad.abs().sum() > 0, "line loss did not reach the refinement layer"

    head.eval()
    with torch.no_grad():
        results = head.post_process(head(feature_maps, metas))
    assert len(results) == B, f"{len(results)} results for batch {B}"
    for result in results:
        assert len(result["vectors"]) == A and result["vectors"][0].shape == (S, 2), "A polylines of S x 2 per sample"
        assert np.all(np.diff(result["scores"]) <= 0), "scores must be sorted descending"
