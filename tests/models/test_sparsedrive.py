"""Whole stage-1 model at test sizes: training step, determinism, gradients, two-frame inference with tracking."""
import math

import pytest
import torch

from tests.models.batch_factory import build_model, inference_data, load_config, make_batch

NUM_DECODER = 2  # the reduced config's decoder count
DET_ANCHORS, DET_TEMP = 50, 30


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_model(load_config(), seed=0)


def _reset_temporal_state(model) -> None:
    model.head.det_head.instance_bank.reset()
    model.head.map_head.instance_bank.reset()


def _train_losses(model, data, seed: int = 0):
    _reset_temporal_state(model)
    model.train()
    torch.manual_seed(seed)
    return model(**data)


def _expected_loss_keys():
    keys = {"loss_dense_depth"}
    for i in range(NUM_DECODER):
        keys |= {f"det_loss_{t}_{i}" for t in ("cls", "box", "cns", "yns")}
        keys |= {f"map_loss_{t}_{i}" for t in ("cls", "line")}
    return keys


@pytest.mark.slow
def test_training_step_losses_finite_and_every_trainable_parameter_gets_a_gradient(model):
    data = make_batch(batch_size=1, seed=0)
    losses = _train_losses(model, data)
    assert set(losses) == _expected_loss_keys(), f"loss keys {sorted(losses)}"
    for name, value in losses.items():
        assert torch.isfinite(value).all(), f"{name} is not finite: {value}"
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"trainable parameters without gradient: {no_grad}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == sorted(
        ["head.det_head.instance_bank.instance_feature", "head.det_head.instance_bank.anchor_handler.fix_scale"]
        + [f"head.det_head.layers.{i}.kps_generator.fix_scale" for i in (0, 7)]
    ), f"unexpected non-trainable parameters: {frozen}"


@pytest.mark.slow
def test_training_losses_are_deterministic_with_a_seed(model):
    data = make_batch(batch_size=1, seed=1)
    first = _train_losses(model, data, seed=3)
    second = _train_losses(model, data, seed=3)
    for name in first:
        assert torch.equal(first[name], second[name]), f"{name} differs between seeded runs"


@pytest.mark.slow
def test_two_frame_inference_tracks_instances_and_gives_independent_results(model):
    _reset_temporal_state(model)
    model.eval()
    bank = model.head.det_head.instance_bank
    with torch.no_grad():
        first = model(**inference_data(make_batch(batch_size=2, frame=0, seed=2)))
        assert int(bank.prev_id) == 2 * DET_ANCHORS, "first frame: every instance gets a new id"
        ids_after_first = bank.instance_id.clone()
        second = model(**inference_data(make_batch(batch_size=2, frame=1, seed=2)))
    new_ids = 2 * (DET_ANCHORS - DET_TEMP)
    assert int(bank.prev_id) == 2 * DET_ANCHORS + new_ids, "second frame: only non-propagated instances get new ids"
    assert bank.mask.tolist() == [True, True], "consecutive frames 0.5 s apart keep the temporal link"
    assert len(second) == 2 and first[0]["img_bbox"] is not first[1]["img_bbox"], "one dict per sample"
    for sample in second:
        res = sample["img_bbox"]
        for key in ("boxes_3d", "scores_3d", "labels_3d", "instance_ids", "vectors", "scores", "labels"):
            assert key in res, f"result misses {key}: {sorted(res)}"
        ids = torch.as_tensor(res["instance_ids"])
        assert ids.min() >= 0 and ids.max() < int(bank.prev_id), f"ids out of range: {ids}"
        assert len(set(ids.tolist())) == len(ids), "track ids within a frame are unique"
    propagated = set(ids_after_first[:, :DET_TEMP].flatten().tolist())
    reported = {int(i) for s in second for i in torch.as_tensor(s["img_bbox"]["instance_ids"])}
    assert reported & propagated, "some reported instances should carry ids from the previous frame"
    boxes0 = torch.as_tensor(second[0]["img_bbox"]["boxes_3d"])
    boxes1 = torch.as_tensor(second[1]["img_bbox"]["boxes_3d"])
    assert not torch.equal(boxes0, boxes1), "samples of a batch must not share one result (upstream quirk 7)"


@pytest.mark.slow
def test_time_gap_over_two_seconds_starts_a_new_scene(model):
    _reset_temporal_state(model)
    model.eval()
    bank = model.head.det_head.instance_bank
    with torch.no_grad():
        model(**inference_data(make_batch(batch_size=1, frame=0, seed=4)))
        model(**inference_data(make_batch(batch_size=1, frame=1, seed=4, time_gap=3.0)))
    assert bank.mask.tolist() == [False], "a 3.5 s gap must break the temporal link"
    assert int(bank.prev_id) == 2 * DET_ANCHORS, "after a scene change every instance gets a new id"


def test_pretrained_argument_is_forwarded_to_the_backbone():
    cfg = load_config()
    import projects.mmdet3d_plugin  # noqa: F401
    from mmdet.models import build_detector

    cfg.model.pretrained = "ckpt/does_not_need_to_exist.pth"
    model = build_detector(cfg.model)
    assert model.img_backbone.init_cfg == dict(type="Pretrained", checkpoint=cfg.model.pretrained), (
        f"backbone init_cfg {model.img_backbone.init_cfg}"
    )
    assert math.isclose(model.grid_mask.prob, 0.7) and model.grid_mask.mode == 1, "upstream's grid-mask settings"


@pytest.mark.slow
def test_list_form_input_is_unwrapped_like_upstreams_fake_tta(model):
    model.eval()
    data = inference_data(make_batch(batch_size=1, frame=0, seed=5))
    wrapped = {k: [v] for k, v in data.items()}
    _reset_temporal_state(model)
    with torch.no_grad():
        plain = model(**data)
        _reset_temporal_state(model)
        unwrapped = model(**wrapped)
    assert torch.equal(
        torch.as_tensor(plain[0]["img_bbox"]["boxes_3d"]), torch.as_tensor(unwrapped[0]["img_bbox"]["boxes_3d"])
    ), "a list-wrapped batch must give the same result as the plain batch"


def _conv1_calls_in_forward_and_backward(model, backend: str, monkeypatch) -> int:
    """Forward + backward of the backbone on one small image with ``backend``; calls of the first block's conv1."""
    from projects.mmdet3d_plugin import device

    monkeypatch.setattr(device, "get_backend", lambda: backend)
    monkeypatch.delenv(device.WITH_CP_ENV_VAR, raising=False)
    conv1 = model.img_backbone.layer1[0].conv1
    calls = []
    handle = conv1.register_forward_hook(lambda *_: calls.append(1))
    try:
        model.train()
        feats = model.extract_feat(torch.randn(1, 1, 3, 64, 64))
        feats[0].sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    return len(calls)


def test_activation_checkpointing_recomputes_the_backbone_on_accelerators_only(model, monkeypatch):
    configured = [with_cp for _, with_cp in model._configured_with_cp]
    assert configured and all(configured), "the reduced config keeps upstream's with_cp=True in every block"
    assert _conv1_calls_in_forward_and_backward(model, "npu", monkeypatch) == 2, "with_cp must recompute in backward"
    assert _conv1_calls_in_forward_and_backward(model, "cpu", monkeypatch) == 1, "no recompute on the CPU"


def test_channels_last_backbone_gives_the_same_features(model, monkeypatch):
    from projects.mmdet3d_plugin import device

    model.eval()
    img = torch.randn(1, 2, 3, 64, 176, generator=torch.Generator().manual_seed(0))
    formats = []
    handle = model.img_backbone.register_forward_hook(
        lambda _m, _i, out: formats.append(out[0].is_contiguous(memory_format=torch.channels_last))
    )
    results = {}
    try:
        for flag in ("0", "1"):
            monkeypatch.setenv(device.CHANNELS_LAST_ENV_VAR, flag)
            with torch.no_grad():
                results[flag] = model.extract_feat(img)
    finally:
        handle.remove()
    assert formats == [False, True], f"backbone output channels-last per run: {formats}"
    plain, nhwc = results["0"][0], results["1"][0]
    assert nhwc.shape == plain.shape and nhwc.is_contiguous(), "the flattened features keep their layout"
    error = ((nhwc - plain).abs().max() / plain.abs().max()).item()
    assert error < 1e-5, f"channels-last features differ from the plain ones by {error:.2e} (relative)"
