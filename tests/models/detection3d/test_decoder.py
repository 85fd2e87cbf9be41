"""SparseBox3DDecoder: top-k, score threshold, centerness re-scoring, track ids, cls_scores quirk flag."""
import math

import torch

from projects.mmdet3d_plugin.models.detection3d.decoder import SparseBox3DDecoder


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def make_inputs():
    """One sample, 4 instances, 3 classes; best class scores 0.9, 0.2, 0.6, 0.7 (classes 1, 0, 2, 1)."""
    probs = torch.tensor([[0.1, 0.9, 0.2], [0.2, 0.1, 0.1], [0.3, 0.1, 0.6], [0.1, 0.7, 0.1]])
    cls = probs.log() - (1 - probs).log()
    boxes = torch.zeros(1, 4, 11)
    boxes[0, :, 0] = torch.arange(4.0)  # x = instance index
    boxes[0, :, 3:6] = math.log(2.0)
    boxes[0, :, 6] = 1.0  # sin yaw: yaw = pi / 2
    return [cls[None]], [boxes]


def test_topk_per_instance_with_ids_decodes_boxes():
    cls, boxes = make_inputs()
    ids = torch.tensor([[10, 11, 12, 13]])
    out = SparseBox3DDecoder(num_output=3).decode(cls, boxes, instance_id=ids, quality=[None])
    assert len(out) == 1, "one result per sample"
    result = out[0]
    assert result["instance_ids"].tolist() == [10, 13, 12], "top-3 instances by best class score"
    assert result["labels_3d"].tolist() == [1, 1, 2], "labels are each instance's best class"
    assert torch.allclose(result["scores_3d"], torch.tensor([0.9, 0.7, 0.6])), "scores are sigmoid of the logits"
    assert result["boxes_3d"].shape == (3, 10), "decoded boxes have 10 values"
    assert torch.allclose(result["boxes_3d"][:, 0], torch.tensor([0.0, 3.0, 2.0])), "boxes follow the selection"
    assert torch.allclose(result["boxes_3d"][0, 3:7], torch.tensor([2.0, 2.0, 2.0, math.pi / 2])), "size/yaw decode"
    assert "cls_scores" not in result, "cls_scores only exist with quality"


def test_without_ids_every_class_competes():
    cls, boxes = make_inputs()
    result = SparseBox3DDecoder(num_output=2).decode(cls, boxes)[0]
    assert result["labels_3d"].tolist() == [1, 1] and torch.allclose(result["scores_3d"], torch.tensor([0.9, 0.7])), (
        "top-2 over (instance, class) pairs"
    )
    assert torch.allclose(result["boxes_3d"][:, 0], torch.tensor([0.0, 3.0])), "box index = flat index // num_cls"


def test_score_threshold_drops_low_scores():
    cls, boxes = make_inputs()
    ids = torch.tensor([[10, 11, 12, 13]])
    result = SparseBox3DDecoder(num_output=4, score_threshold=0.65).decode(cls, boxes, instance_id=ids)[0]
    assert result["instance_ids"].tolist() == [10, 13], "instances below the threshold must be dropped"
    assert all(len(v) == 2 for v in result.values()), "every output is filtered the same way"


def test_centerness_rescoring_and_cls_scores_quirk():
    cls, boxes = make_inputs()
    ids = torch.tensor([[10, 11, 12, 13]])
    quality = torch.zeros(1, 4, 2)
    quality[0, 0, 0] = logit(0.5)  # 0.9 * 0.5 = 0.45
    quality[0, 3, 0] = logit(0.9)  # 0.7 * 0.9 = 0.63
    quality[0, 2, 0] = logit(0.8)  # 0.6 * 0.8 = 0.48
    upstream = SparseBox3DDecoder(num_output=3).decode(cls, boxes, instance_id=ids, quality=[quality])[0]
    assert upstream["instance_ids"].tolist() == [13, 12, 10], "re-sorted by score x centerness"
    assert torch.allclose(upstream["scores_3d"], torch.tensor([0.63, 0.48, 0.45])), "score times sigmoid(centerness)"
    assert torch.allclose(upstream["cls_scores"], torch.tensor([0.9, 0.7, 0.6])), (
        "upstream keeps cls_scores in the pre-sort order (quirk 8)"
    )
    fixed = SparseBox3DDecoder(num_output=3, reorder_cls_scores=True).decode(cls, boxes, ids, [quality])[0]
    assert torch.allclose(fixed["cls_scores"], torch.tensor([0.7, 0.6, 0.9])), "the flag aligns cls_scores with boxes"


def test_num_output_larger_than_candidates_keeps_all():
    cls, boxes = make_inputs()
    result = SparseBox3DDecoder(num_output=300).decode(cls, boxes, instance_id=torch.tensor([[0, 1, 2, 3]]))[0]
    assert len(result["scores_3d"]) == 4, "with 4 instances and ids, all 4 must be returned"


def test_registered_under_upstream_type_names():
    from mmcv.cnn.bricks.registry import PLUGIN_LAYERS, POSITIONAL_ENCODING
    from mmdet.core.bbox.builder import BBOX_CODERS, BBOX_SAMPLERS
    from mmdet.models.builder import LOSSES

    from projects.mmdet3d_plugin.models import detection3d

    expected = [
        (POSITIONAL_ENCODING, "SparseBox3DEncoder"),
        (PLUGIN_LAYERS, "SparseBox3DRefinementModule"),
        (PLUGIN_LAYERS, "SparseBox3DKeyPointsGenerator"),
        (BBOX_SAMPLERS, "SparseBox3DTarget"),
        (BBOX_CODERS, "SparseBox3DDecoder"),
        (LOSSES, "SparseBox3DLoss"),
    ]
    for registry, name in expected:
        assert registry.get(name) is getattr(detection3d, name), f"{name} missing from registry {registry.name}"
