"""Map decoder: top-k over (instance, class) pairs and the optional score threshold."""
import numpy as np
import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.core.bbox.builder import build_bbox_coder  # noqa: E402

from projects.mmdet3d_plugin.models.map import SparsePoint3DDecoder  # noqa: E402


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


# One sample, 3 instances x 3 classes; the 3 best pairs are (1, 2) 0.9, (0, 0) 0.8, (1, 0) 0.7.
PROBS = [[0.8, 0.1, 0.2], [0.7, 0.3, 0.9], [0.05, 0.6, 0.4]]
LOGITS = torch.tensor([[[_logit(p) for p in row] for row in PROBS]])
POINTS = torch.arange(3 * 8, dtype=torch.float32).reshape(1, 3, 8)  # 3 instances, 4 points each


def test_top_k_keeps_best_instance_class_pairs():
    decoder = build_bbox_coder(dict(type="SparsePoint3DDecoder"))
    assert isinstance(decoder, SparsePoint3DDecoder), "registry did not build SparsePoint3DDecoder"
    other_layer = torch.zeros_like(LOGITS)
    (result,) = decoder.decode([other_layer, LOGITS], [POINTS * 0, POINTS])
    assert np.allclose(result["scores"], [0.9, 0.8, 0.7]), f"scores {result['scores']} are not the top 3"
    assert result["labels"].tolist() == [2, 0, 0], f"labels {result['labels'].tolist()} != [2, 0, 0]"
    assert len(result["vectors"]) == 3, "one polyline per kept pair"
    for vec, inst in zip(result["vectors"], [1, 0, 1]):
        assert vec.shape == (4, 2), f"polyline shape {vec.shape} != (4, 2)"
        assert np.array_equal(vec, POINTS[0, inst].reshape(4, 2).numpy()), f"wrong polyline for instance {inst}"


def test_score_threshold_drops_low_pairs_per_sample():
    decoder = SparsePoint3DDecoder(score_threshold=0.75)
    logits = torch.cat([LOGITS, torch.full_like(LOGITS, -10.0)])
    results = decoder.decode([logits], [torch.cat([POINTS, POINTS])])
    assert len(results) == 2, "one result per sample"
    assert results[0]["labels"].tolist() == [2, 0], f"kept labels {results[0]['labels'].tolist()} != [2, 0]"
    assert len(results[0]["vectors"]) == 2 and results[1]["scores"].size == 0, "threshold not applied per sample"


def test_output_idx_selects_the_decoder_layer():
    decoder = SparsePoint3DDecoder()
    (first,) = decoder.decode([LOGITS, -LOGITS], [POINTS, POINTS], output_idx=0)
    assert first["labels"].tolist() == [2, 0, 0], "output_idx=0 did not decode the first layer"
