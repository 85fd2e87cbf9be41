"""InstanceQueue: what it keeps, how entries age, track-id re-alignment, resets, both feature formats."""
import numpy as np
import pytest
import torch

pytest.importorskip("mmcv")

from projects.mmdet3d_plugin.core.box3d import VY, X  # noqa: E402
from projects.mmdet3d_plugin.models.motion.instance_queue import (  # noqa: E402
    InstanceQueue,
    select_front_stride32_map,
)
from projects.mmdet3d_plugin.ops import feature_maps_format  # noqa: E402

C = 8
QUEUE_LENGTH = 3


class ShiftX:
    """Anchor handler stand-in: moving into the current frame adds 1 m to x."""

    @staticmethod
    def anchor_projection(anchor, T_src2dst_list, time_intervals=None):
        out = anchor.clone()
        out[..., X] += 1.0
        return [out]


def make_queue() -> InstanceQueue:
    torch.manual_seed(0)
    return InstanceQueue(C, queue_length=QUEUE_LENGTH, tracking_threshold=0.2, feature_map_scale=(4, 4)).eval()


def det_output(ids, logits, fill):
    """Det output for one sample: instance i has feature fill[i] everywhere and anchor x = fill[i]."""
    num = len(ids)
    fill = torch.tensor(fill, dtype=torch.float32)
    anchors = torch.zeros(1, num, 11)
    anchors[..., X] = fill
    return {
        "instance_feature": fill[None, :, None].expand(1, num, C).clone(),
        "prediction": [anchors],
        "classification": [torch.tensor(logits, dtype=torch.float32)[None, :, None].expand(1, num, 2).clone()],
        "instance_id": torch.tensor([ids]),
    }


def feature_maps(batch: int = 1):
    return [torch.randn(batch, 2, C, 8, 8), torch.randn(batch, 2, C, 4, 4)]


METAS = {"img_metas": [{"T_global": np.eye(4), "T_global_inv": np.eye(4)}]}


def step(queue, out, mask=True, status=None, handler=None, batch=1):
    result = queue.get(out, feature_maps(batch), METAS, batch, torch.tensor([mask] * batch), handler)
    queue.cache_motion(out["instance_feature"], out, METAS)
    status = torch.zeros(batch, 1, 10) if status is None else status
    queue.cache_planning(torch.full((batch, 1, C), -7.0), status)
    return result


def test_first_frame_keeps_only_current_entry():
    queue = make_queue()
    ego_feature, ego_anchor, temp_feature, temp_anchor, temp_mask = step(queue, det_output([1, 2], [3, 3], [1, 2]))
    assert ego_feature.shape == (1, 1, C) and ego_anchor.shape == (1, 1, 11), "ego shapes"
    assert temp_feature.shape == (1, 3, 1, C) and temp_anchor.shape == (1, 3, 1, 11), "agents + ego, one slot"
    assert not temp_mask.any(), "the current slot is always valid"
    assert queue.period.tolist() == [[1, 1]] and queue.ego_period.tolist() == [[1]], "period starts at 1"
    assert torch.equal(temp_feature[0, :2, 0, 0], torch.tensor([1.0, 2.0])), "current det features queued"


def test_queue_realigns_by_track_id_and_drops_unconfident():
    queue = make_queue()
    # id 12 was tracked with a confidence below the threshold (sigmoid(-3) < 0.2): it must not be matched
    step(queue, det_output([10, 11, 12], [3, 3, -3], [1, 2, 3]))
    _, _, temp_feature, temp_anchor, temp_mask = step(queue, det_output([11, 13, 10, 12], [3, 3, 3, 3], [5, 6, 7, 8]))
    history = temp_feature[0, :4, 0, 0].tolist()
    assert history == [2.0, 0.0, 1.0, 0.0], f"previous slot re-indexed by id, unmatched zero: {history}"
    assert temp_anchor[0, :4, 0, X].tolist() == [2.0, 0.0, 1.0, 0.0], "anchors follow the same ids"
    assert queue.period.tolist() == [[2, 1, 2, 1]], "matched agents age, new ones start at 1"
    expected_mask = [[False, False], [True, False], [False, False], [True, False]]
    assert temp_mask[0, :4].tolist() == expected_mask, "history slot hidden for new agents"


def test_queue_ages_and_caps_at_queue_length():
    queue = make_queue()
    for frame in range(5):
        _, _, temp_feature, _, temp_mask = step(queue, det_output([1], [3], [float(frame)]))
    assert temp_feature.shape[2] == QUEUE_LENGTH, "at most queue_length slots"
    assert temp_feature[0, 0, :, 0].tolist() == [2.0, 3.0, 4.0], "oldest first, oldest dropped"
    assert queue.period.tolist() == [[QUEUE_LENGTH]], "period clipped to queue_length"
    assert not temp_mask.any(), "a long-tracked agent sees its whole history"


def test_ego_speed_and_period_reset_on_scene_change():
    queue = make_queue()
    status = torch.arange(10, dtype=torch.float32).reshape(1, 1, 10)
    step(queue, det_output([1], [3], [1]), status=status)
    _, ego_anchor, _, _, temp_mask = step(queue, det_output([1], [3], [1]), status=status)
    assert ego_anchor[0, 0, VY].item() == 6.0, "VY of the ego anchor = previous forward speed (status[6])"
    assert queue.ego_period.tolist() == [[2]], "ego tracked for two frames"
    assert not temp_mask[0, -1].any(), "ego history visible"

    _, ego_anchor, _, _, temp_mask = step(queue, det_output([5], [3], [1]), mask=False, status=status)
    assert ego_anchor[0, 0, VY].item() == 0.0, "no speed carried across a scene change"
    assert queue.ego_period.tolist() == [[1]], "ego period restarts on a scene change"
    assert temp_mask[0, -1].tolist() == [True, True, False], "only the newest ego slot is valid"
    assert temp_mask[0, 0].tolist() == [True, True, False], "new track id: only the newest agent slot"


def test_batch_size_change_resets_and_cache_swaps_refined_ego_feature():
    queue = make_queue()
    step(queue, det_output([1], [3], [1]))
    assert torch.all(queue.ego_feature_queue[-1] == -7.0), "newest ego entry replaced by the refined feature"
    one = det_output([1], [3], [1])
    two = {
        "instance_feature": one["instance_feature"].repeat(2, 1, 1),
        "prediction": [one["prediction"][0].repeat(2, 1, 1)],
        "classification": [one["classification"][0].repeat(2, 1, 1)],
        "instance_id": one["instance_id"].repeat(2, 1),
    }
    metas = {"img_metas": METAS["img_metas"] * 2}
    out = queue.get(two, feature_maps(2), metas, 2, torch.tensor([True, True]), None)
    assert out[2].shape[2] == 1 and queue.period.tolist() == [[1], [1]], "new batch size starts fresh"


def test_queued_anchors_are_moved_into_the_current_frame():
    queue = make_queue()
    step(queue, det_output([1], [3], [0]))
    step(queue, det_output([1], [3], [0]), handler=ShiftX())
    _, _, _, temp_anchor, _ = step(queue, det_output([1], [3], [0]), handler=ShiftX())
    assert temp_anchor[0, 0, :, X].tolist() == [2.0, 1.0, 0.0], "agent entries projected once per frame"
    assert temp_anchor[0, 1, :, X].tolist() == [2.0, 1.0, 0.0], "ego entries projected too"


def test_front_stride32_map_same_from_both_feature_formats():
    maps = [torch.randn(2, 3, C, 6, 10), torch.randn(2, 3, C, 3, 5)]
    flat = feature_maps_format(maps)
    from_list = select_front_stride32_map(maps)
    from_flat = select_front_stride32_map(flat)
    assert from_list.shape == (2, C, 3, 5), "last level of camera 0"
    assert torch.equal(from_list, maps[-1][:, 0]), "list format: camera 0, last level"
    assert torch.equal(from_flat, from_list), "flattened triple gives the same map"


def test_ego_encoder_rejects_wrong_feature_map_scale():
    queue = InstanceQueue(C, queue_length=2, feature_map_scale=(2, 2))
    with pytest.raises(ValueError, match="feature_map_scale"):
        queue.prepare_planning([torch.randn(1, 1, C, 8, 8)], torch.tensor([True]), 1)
