"""The stage-1 model built from the real config has exactly upstream's state-dict keys and shapes."""
import pytest
import torch

from tests.models.batch_factory import ROOT, STAGE1_CONFIG, load_config
from tests.models.state_dict_spec import assert_state_dict_matches_spec

# upstream's key -> shape list (a copy of shared/spec/state_dict_stage1.json, so the test never skips)
SPEC = ROOT / "tests" / "models" / "fixtures" / "state_dict_stage1.json"


@pytest.mark.slow
def test_stage1_state_dict_matches_upstream_keys_and_shapes():
    import projects.mmdet3d_plugin  # noqa: F401
    from mmdet.models import build_detector

    cfg = load_config(STAGE1_CONFIG, full_size_anchors=True)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    assert_state_dict_matches_spec(model, SPEC, num_params=75_675_882)
