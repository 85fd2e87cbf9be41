"""tools/fuse_conv_bn.py and tools/test.py --fuse-conv-bn: folding BatchNorm into the convolutions keeps the results."""
import copy
import os
import pickle
import sys

import pytest
import torch

from tests.e2e.conftest import CONFIG1, ROOT, e2e_env, run  # noqa: F401  (e2e_env: pytest fixture)
from tests.models.batch_factory import REDUCED_STAGE1_CONFIG, build_model, inference_data, load_config, make_batch

FEATURE_RTOL = 1e-5  # fp32 rounding of (conv * scale) vs (conv, then scale), relative to the largest feature


def _randomise_batch_norms(model: torch.nn.Module) -> None:
    """Non-trivial statistics and affine parameters, so a wrong fold cannot pass as the identity."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(channels, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(channels, generator=gen) * 0.1)


def _run(model: torch.nn.Module, data: dict):
    """(flattened features [1, N*sum(h*w), C], the first frame's detection scores sorted) in eval mode."""
    model.eval()
    for module in model.modules():
        if type(module).__name__ == "InstanceBank":
            module.reset()
    with torch.no_grad():
        feats = model.extract_feat(data["img"])[0]
        result = model(**data)[0]["img_bbox"]
    return feats, torch.as_tensor(result["scores_3d"]).sort(descending=True).values


def _assert_same(fused, plain) -> None:
    (feats, scores), (ref_feats, ref_scores) = fused, plain
    error = ((feats - ref_feats).abs().max() / ref_feats.abs().max()).item()
    assert error < FEATURE_RTOL, f"fused features differ by {error:.2e} (relative to the largest)"
    assert torch.allclose(scores, ref_scores, atol=1e-5), f"scores differ by {(scores - ref_scores).abs().max():.2e}"


@pytest.fixture(scope="module")
def plain_model():
    torch.set_num_threads(1)
    model = build_model(load_config(), seed=0)
    _randomise_batch_norms(model)
    return model.eval()


@pytest.mark.slow
def test_fused_model_gives_the_unfused_results(plain_model):
    from tools.fuse_conv_bn import fuse

    data = inference_data(make_batch(batch_size=1, frame=0, seed=3))
    fused = fuse(copy.deepcopy(plain_model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.img_backbone.modules()), "BatchNorm left"
    assert fused.img_backbone.conv1.bias is not None, "the stem's BatchNorm must fold into conv1's bias"
    _assert_same(_run(fused, data), _run(plain_model, data))


@pytest.mark.slow
def test_fused_checkpoint_round_trip(plain_model, tmp_path):
    from tools.fuse_conv_bn import load_for_inference, main

    source, fused_path = tmp_path / "plain.pth", tmp_path / "fused.pth"
    torch.save({"meta": {"CLASSES": ["car"]}, "state_dict": plain_model.state_dict()}, source)
    main([str(REDUCED_STAGE1_CONFIG), str(source), str(fused_path)])
    fused_state = torch.load(fused_path, map_location="cpu", weights_only=False)
    assert fused_state["meta"] == {"CLASSES": ["car"], "fused_conv_bn": True}, f"meta {fused_state['meta']}"
    assert not any(k.endswith("running_mean") for k in fused_state["state_dict"]), "BatchNorm statistics remain"

    model = build_model(load_config(), seed=1)  # other random weights: everything must come from the file
    load_for_inference(model, str(fused_path))
    data = inference_data(make_batch(batch_size=1, frame=0, seed=3))
    _assert_same(_run(model, data), _run(plain_model, data))


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    from tools.fuse_conv_bn import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(REDUCED_STAGE1_CONFIG), str(tmp_path / "none.pth"), str(tmp_path / "out.pth")])
    assert exit_info.value.code == 2, "a missing checkpoint is a user error (exit 2)"
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "none.pth does not exist" in errors[0], f"error lines {errors}"


@pytest.mark.slow
def test_test_py_fuse_conv_bn_gives_the_same_results(e2e_env, tmp_path, monkeypatch):  # noqa: F811
    for key in ("SPARSEDRIVE_E2E_DATA_ROOT", "SPARSEDRIVE_E2E_INFO_ROOT", "SPARSEDRIVE_E2E_ANCHOR_DIR"):
        monkeypatch.setenv(key, e2e_env[key])
    model = build_model(load_config(os.path.join(ROOT, CONFIG1)), seed=0)
    _randomise_batch_norms(model)
    checkpoint = tmp_path / "random.pth"
    torch.save({"meta": {}, "state_dict": model.state_dict()}, checkpoint)
    outputs = {}
    for name, extra in (("plain", []), ("fused", ["--fuse-conv-bn"])):
        out = tmp_path / f"{name}.pkl"
        run([sys.executable, "tools/test.py", CONFIG1, str(checkpoint), "--out", str(out), *extra], e2e_env)
        with open(out, "rb") as f:
            outputs[name] = pickle.load(f)
    assert len(outputs["plain"]) == len(outputs["fused"]) > 0, "both runs must cover the whole test split"
    for plain, fused in zip(outputs["plain"], outputs["fused"]):
        a = torch.as_tensor(plain["img_bbox"]["scores_3d"]).sort().values
        b = torch.as_tensor(fused["img_bbox"]["scores_3d"]).sort().values
        assert torch.allclose(a, b, atol=1e-4), f"--fuse-conv-bn changes the scores by {(a - b).abs().max():.2e}"
