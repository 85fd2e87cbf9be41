"""The stage-1 model built from the real config has exactly upstream's state-dict keys and shapes."""
import json

import pytest
import torch

from tests.models.batch_factory import ROOT, STAGE1_CONFIG, load_config

SPEC = ROOT.parent / "shared" / "spec" / "state_dict_stage1.json"


@pytest.mark.slow
@pytest.mark.skipif(not SPEC.exists(), reason=f"{SPEC} not available")
def test_stage1_state_dict_matches_upstream_keys_and_shapes():
    import projects.mmdet3d_plugin  # noqa: F401
    from mmdet.models import build_detector

    expected = {k: list(v) for k, v in json.loads(SPEC.read_text()).items()}
    cfg = load_config(STAGE1_CONFIG, full_size_anchors=True)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    assert not missing, f"{len(missing)} upstream keys missing, e.g. {missing[:10]}"
    assert not unexpected, f"{len(unexpected)} keys upstream does not have, e.g. {unexpected[:10]}"
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong, f"{len(wrong)} shape mismatches (got, upstream), e.g. {dict(list(wrong.items())[:10])}"
    num_params = sum(p.numel() for p in model.parameters())
    assert num_params == 75_675_882, f"parameter count {num_params} != upstream's 75,675,882"
