"""InstanceBank: first frame, caching with confidence decay, ego-motion projection, merge, reset, track ids."""
import math

import numpy as np
import pytest
import torch

from projects.mmdet3d_plugin.models.instance_bank import InstanceBank, topk
from projects.mmdet3d_plugin.models.detection3d import detection3d_blocks  # noqa: F401  (registers the anchor handler)

A, K, C, NUM_CLS = 6, 3, 4, 2


def _anchors(num: int = A) -> np.ndarray:
    anchor = np.zeros((num, 11), dtype=np.float32)
    anchor[:, 0] = np.arange(num)
    anchor[:, 6] = 0.0  # sin
    anchor[:, 7] = 1.0  # cos
    return anchor


def _bank(**kwargs) -> InstanceBank:
    cfg = dict(
        num_anchor=A,
        embed_dims=C,
        anchor=_anchors(),
        anchor_handler=dict(type="SparseBox3DKeyPointsGenerator"),
        num_temp_instances=K,
        confidence_decay=0.5,
        feat_grad=False,
    )
    cfg.update(kwargs)
    return InstanceBank(**cfg)


def _metas(batch: int, timestamp: float, poses) -> dict:
    return {
        "timestamp": torch.full((batch,), timestamp, dtype=torch.float64),
        "img_metas": [{"T_global": p, "T_global_inv": np.linalg.inv(p)} for p in poses],
    }


def _logits(scores: torch.Tensor) -> torch.Tensor:
    """Class logits whose max-class sigmoid equals ``scores`` [B, A] -> [B, A, NUM_CLS]."""
    logit = torch.log(scores / (1 - scores))
    return torch.stack([logit, logit - 5], dim=-1)


def test_topk_keeps_highest_confidence_sorted():
    conf = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    values = torch.arange(8.0).reshape(1, 4, 2)
    top, (gathered,) = topk(conf, 2, values)
    assert torch.allclose(top, torch.tensor([[0.9, 0.7]])), f"top values wrong: {top}"
    assert torch.equal(gathered, torch.tensor([[[2.0, 3.0], [6.0, 7.0]]])), f"gathered rows wrong: {gathered}"


def test_first_frame_returns_tiled_parameters_and_default_interval():
    bank = _bank()
    feat, anchor, cached_feat, cached_anchor, dt = bank.get(2, _metas(2, 0.0, [np.eye(4)] * 2))
    assert feat.shape == (2, A, C) and anchor.shape == (2, A, 11), "tiled shapes wrong"
    assert torch.equal(anchor[1], bank.anchor.detach()), "anchors must be tiled over the batch"
    assert cached_feat is None and cached_anchor is None, "no cache on the first frame"
    assert torch.allclose(dt, torch.full((2,), 0.5)), f"default dt expected, got {dt}"


def test_cache_keeps_top_k_and_decays_propagated_confidence():
    bank = _bank()
    bank.get(1, _metas(1, 0.0, [np.eye(4)]))
    feat = torch.arange(A, dtype=torch.float32)[None, :, None].repeat(1, 1, C)
    scores = torch.tensor([[0.2, 0.9, 0.4, 0.8, 0.1, 0.6]])
    bank.cache(feat, bank.anchor[None].detach().clone(), _logits(scores), _metas(1, 0.0, [np.eye(4)]))
    assert torch.allclose(bank.confidence, torch.tensor([[0.9, 0.8, 0.6]]), atol=1e-6), f"{bank.confidence}"
    assert torch.equal(bank.cached_feature[0, :, 0], torch.tensor([1.0, 3.0, 5.0])), "wrong instances cached"

    # next frame: the first K rows are propagated; 0.9 * 0.5 = 0.45 beats their new 0.3, 0.4 * 0.5 < 0.7
    bank.confidence = torch.tensor([[0.9, 0.4, 0.2]])
    scores = torch.tensor([[0.3, 0.7, 0.05, 0.5, 0.44, 0.01]])
    bank.cache(feat, bank.anchor[None].detach().clone(), _logits(scores), _metas(1, 0.5, [np.eye(4)]))
    expected_temp = torch.tensor([[0.45, 0.7, 0.1, 0.5, 0.44, 0.01]])
    assert torch.allclose(bank.temp_confidence, expected_temp, atol=1e-6), f"decay wrong: {bank.temp_confidence}"
    assert torch.allclose(bank.confidence, torch.tensor([[0.7, 0.5, 0.45]]), atol=1e-6), f"{bank.confidence}"


def _cache_one_frame(bank: InstanceBank, batch: int, pose: np.ndarray, timestamp: float) -> None:
    bank.get(batch, _metas(batch, timestamp, [pose] * batch))
    anchor = bank.anchor[None].detach().clone().repeat(batch, 1, 1)
    anchor[..., 8] = 2.0  # vx = 2 m/s
    scores = torch.linspace(0.9, 0.1, A)[None].repeat(batch, 1)
    bank.cache(torch.zeros(batch, A, C), anchor, _logits(scores), _metas(batch, timestamp, [pose] * batch))


def test_get_projects_cached_anchors_by_ego_motion_and_velocity():
    bank = _bank()
    pose0 = np.eye(4)
    _cache_one_frame(bank, 1, pose0, 0.0)
    # ego moved 3 m along global x and turned 90 degrees: a global point p has LiDAR coords R^T (p - t)
    pose1 = np.eye(4)
    pose1[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    pose1[0, 3] = 3.0
    _, _, _, cached_anchor, dt = bank.get(1, _metas(1, 0.5, [pose1]))
    x_prev = torch.tensor([0.0, 1.0, 2.0])  # top-3 cached anchors: x = 0, 1, 2, moved by vx * dt = 1 m
    x_moved = x_prev + 1.0
    expected_x = torch.zeros(3)
    expected_y = -(x_moved - 3.0)
    assert torch.allclose(cached_anchor[0, :, 0], expected_x, atol=1e-5), f"x wrong: {cached_anchor[0, :, 0]}"
    assert torch.allclose(cached_anchor[0, :, 1], expected_y, atol=1e-5), f"y wrong: {cached_anchor[0, :, 1]}"
    # heading +x global becomes -y in the new frame: (sin, cos) = (-1, 0); velocity (2, 0) -> (0, -2)
    assert torch.allclose(cached_anchor[0, :, 6:8], torch.tensor([-1.0, 0.0]).expand(3, 2), atol=1e-6), "yaw"
    assert torch.allclose(cached_anchor[0, :, 8:10], torch.tensor([0.0, -2.0]).expand(3, 2), atol=1e-6), "vel"
    assert torch.allclose(dt, torch.tensor([0.5])), f"dt should be 0.5, got {dt}"
    assert bank.mask.tolist() == [True], "gap of 0.5 s keeps the temporal link"


def test_large_time_gap_invalidates_link_and_update_keeps_current_instances():
    bank = _bank()
    _cache_one_frame(bank, 2, np.eye(4), 0.0)
    metas = _metas(2, 1.0, [np.eye(4)] * 2)
    metas["timestamp"] = torch.tensor([1.0, 5.0], dtype=torch.float64)  # sample 1: new scene
    bank.instance_id = torch.arange(2 * A).reshape(2, A)
    feat, anchor, _, _, dt = bank.get(2, metas)
    assert bank.mask.tolist() == [True, False], f"mask wrong: {bank.mask}"
    assert torch.allclose(dt, torch.tensor([1.0, 0.5])), f"invalid samples fall back to 0.5 s, got {dt}"

    cur_feat = torch.arange(A, dtype=torch.float32)[None, :, None].repeat(2, 1, C) + 10
    scores = torch.tensor([0.1, 0.2, 0.9, 0.3, 0.8, 0.7])[None].repeat(2, 1)
    new_feat, new_anchor = bank.update(cur_feat, anchor, _logits(scores))
    assert torch.equal(new_feat[0, :K, 0], bank.cached_feature[0, :, 0]), "valid sample: cached first"
    assert torch.equal(new_feat[0, K:, 0], torch.tensor([12.0, 14.0, 15.0])), "then the top A-K current"
    assert torch.equal(new_feat[1], cur_feat[1]), "invalid sample keeps its current instances"
    assert torch.all(bank.confidence[1] == 0), "invalid sample's stored confidence is zeroed"
    assert torch.all(bank.instance_id[1] == -1) and bank.instance_id[0, 0] == 0, "invalid sample's ids reset"


def test_batch_size_change_resets_state():
    bank = _bank()
    _cache_one_frame(bank, 2, np.eye(4), 0.0)
    bank.prev_id = torch.tensor(7)
    _, _, cached_feat, _, _ = bank.get(1, _metas(1, 0.5, [np.eye(4)]))
    assert cached_feat is None and bank.prev_id == 0, "a different batch size must reset the bank"


def test_track_ids_new_then_propagated():
    bank = _bank()
    bank.get(2, _metas(2, 0.0, [np.eye(4)] * 2))
    scores = torch.tensor([[0.2, 0.9, 0.4, 0.8, 0.1, 0.6], [0.5, 0.4, 0.3, 0.2, 0.1, 0.6]])
    logits = _logits(scores)
    bank.cache(torch.zeros(2, A, C), bank.anchor[None].detach().repeat(2, 1, 1), logits, _metas(2, 0.0, [np.eye(4)] * 2))
    ids = bank.get_instance_id(logits)
    assert torch.equal(ids, torch.arange(2 * A).reshape(2, A)), f"first frame: row-major new ids, got {ids}"
    assert int(bank.prev_id) == 2 * A, "prev_id advances by the number of new ids"
    # stored: ids of the cached top-K (by temp_confidence), padded with -1
    assert bank.instance_id[0].tolist() == [1, 3, 5, -1, -1, -1], f"stored ids {bank.instance_id[0]}"
    assert bank.instance_id[1].tolist() == [11, 6, 7, -1, -1, -1], f"stored ids {bank.instance_id[1]}"

    ids2 = bank.get_instance_id(logits, threshold=0.5)
    assert ids2[0, :K].tolist() == [1, 3, 5], "propagated instances keep their ids"
    # new ids only where score >= 0.5 among positions K..A-1: sample 0 pos 3 (0.8) and 5 (0.6), sample 1 pos 5
    assert ids2[0, K:].tolist() == [12, -1, 13] and ids2[1, K:].tolist() == [-1, -1, 14], f"{ids2}"
    assert int(bank.prev_id) == 15


def test_map_style_bank_flattens_polylines_and_xavier_inits_features():
    anchor = np.zeros((4, 20, 2), dtype=np.float32)
    bank = InstanceBank(num_anchor=3, embed_dims=8, anchor=anchor, num_temp_instances=0, feat_grad=True)
    assert tuple(bank.anchor.shape) == (3, 40), "map anchors are truncated and flattened to [A, 40]"
    bank.init_weight()
    bound = math.sqrt(6 / (3 + 8))
    assert bank.instance_feature.abs().max() <= bound and bank.instance_feature.abs().sum() > 0, "xavier init"
    bank.cache(torch.zeros(1, 3, 8), torch.zeros(1, 3, 40), torch.zeros(1, 3, 3))
    assert bank.cached_feature is None, "num_temp_instances=0 disables caching"


def test_missing_anchor_file_names_the_fix(tmp_path):
    looked_at = rf"missing\.npy is missing \(looked at {tmp_path}/missing\.npy\).*k-means"
    with pytest.raises(FileNotFoundError, match=looked_at):
        InstanceBank(num_anchor=3, embed_dims=8, anchor=str(tmp_path / "missing.npy"))


def test_truncated_anchor_file_is_one_oserror_naming_it(tmp_path):
    path = tmp_path / "kmeans_det_900.npy"
    np.save(path, np.zeros((900, 11), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(OSError, match=r"kmeans_det_900\.npy cannot be read .*truncated.*test/preprocess\.sh"):
        InstanceBank(num_anchor=3, embed_dims=8, anchor=str(path))
