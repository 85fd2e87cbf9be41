"""The stage-2 model built from the real config matches upstream's state dict, and stage-1 weights load into it."""
import numpy as np
import pytest
import torch

from tests.models.batch_factory import ROOT, STAGE1_CONFIG, load_config
from tests.models.state_dict_spec import assert_state_dict_matches_spec

STAGE2_CONFIG = ROOT / "projects" / "configs" / "sparsedrive_small_stage2.py"
# upstream's key -> shape list (a copy of shared/spec/state_dict_stage2.json, so the test never skips)
SPEC = ROOT / "tests" / "models" / "fixtures" / "state_dict_stage2.json"
MOTION_PREFIX = "head.motion_plan_head."


def _build(path):
    import projects.mmdet3d_plugin  # noqa: F401  (registers the modules)
    from mmdet.models import build_detector

    cfg = load_config(path, full_size_anchors=True)
    motion = cfg.model.head.motion_plan_head
    motion.motion_anchor = np.zeros((10, motion.fut_mode, motion.fut_ts, 2), dtype=np.float32)
    motion.plan_anchor = np.zeros((3, motion.ego_fut_mode, motion.ego_fut_ts, 2), dtype=np.float32)
    torch.manual_seed(0)
    return build_detector(cfg.model)


@pytest.mark.slow
def test_stage2_state_dict_matches_upstream_keys_and_shapes():
    model = _build(STAGE2_CONFIG)
    assert_state_dict_matches_spec(model, SPEC, num_params=86_142_365)
    motion_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(MOTION_PREFIX))
    assert motion_params == 10_466_483, f"motion-planning head has {motion_params} parameters, upstream 10,466,483"


@pytest.mark.slow
def test_stage1_checkpoint_loads_with_only_the_motion_head_missing():
    stage1_state = _build(STAGE1_CONFIG).state_dict()
    model = _build(STAGE2_CONFIG)
    # BatchNorm fills in an absent num_batches_tracked itself, so torch never reports it as missing
    motion_keys = {
        k for k in model.state_dict() if k.startswith(MOTION_PREFIX) and not k.endswith("num_batches_tracked")
    }
    result = model.load_state_dict(stage1_state, strict=False)
    assert not result.unexpected_keys, f"stage-1 keys the stage-2 model lacks: {result.unexpected_keys[:10]}"
    assert set(result.missing_keys) == motion_keys, (
        f"missing keys should be exactly the motion head's: extra {sorted(set(result.missing_keys) - motion_keys)[:10]}"
    )
    det_key = "head.det_head.anchor_encoder.pos_fc.0.weight"
    assert torch.equal(model.state_dict()[det_key], stage1_state[det_key]), "stage-1 weights copied"
