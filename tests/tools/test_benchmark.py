"""tools/benchmark.py: upstream's FPS measurement over the test split, on the tiny e2e set (CPU)."""
import json
import os

import pytest
import torch

from tests.e2e.conftest import CONFIG1, ROOT, e2e_env  # noqa: F401  (e2e_env: pytest fixture)


@pytest.fixture
def e2e_config(e2e_env, monkeypatch):  # noqa: F811
    """The e2e stage-1 config path, with its data and anchor locations in this process's environment."""
    for key in ("SPARSEDRIVE_E2E_DATA_ROOT", "SPARSEDRIVE_E2E_INFO_ROOT", "SPARSEDRIVE_E2E_ANCHOR_DIR"):
        monkeypatch.setenv(key, e2e_env[key])
    monkeypatch.delenv("SPARSEDRIVE_DEVICE", raising=False)
    return os.path.join(ROOT, CONFIG1)


def _main(argv):
    from tools.benchmark import main

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        return main(argv)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_benchmark_times_the_frames_after_warmup_and_counts_parameters(e2e_config, tmp_path, capsys):
    from tests.models.batch_factory import build_model, load_config

    out = tmp_path / "bench.json"
    report = _main([e2e_config, "--samples", "4", "--warmup", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert report["frames"] == 3 and report["warmup"] == 1, "4 frames run, the first one left out"
    assert 0 < report["fps"] <= report["model_fps"], "frames with loading cannot be faster than the model alone"
    assert report["s_per_frame"] == pytest.approx(1 / report["fps"], rel=1e-2), "s per frame is 1 / fps"
    assert report["precision"] == "fp32", "the config's fp16 does not apply on the CPU"
    expected_params = sum(p.numel() for p in build_model(load_config(e2e_config)).parameters())
    assert report["params"] == expected_params, f"{report['params']} parameters reported, model has {expected_params}"
    assert report["peak_rss_gib"] > 0, "CPU runs report the process's peak RSS"
    assert json.loads(out.read_text()) == report, "--out must write the report"
    assert "fps (data loading included)" in printed and "model fps" in printed, printed[-500:]


@pytest.mark.slow
def test_benchmark_with_checkpoint_and_fused_conv_bn(e2e_config, tmp_path):
    from tests.models.batch_factory import build_model, load_config

    model = build_model(load_config(e2e_config))
    checkpoint = tmp_path / "demo.pth"
    torch.save({"meta": {}, "state_dict": model.state_dict()}, checkpoint)
    norm_channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert norm_channels > 0, "the backbone has BatchNorms to fold"
    report = _main([e2e_config, str(checkpoint), "--samples", "2", "--warmup", "1", "--fuse-conv-bn"])
    plain = sum(p.numel() for p in model.parameters())
    assert report["fuse_conv_bn"] and report["checkpoint"] == str(checkpoint)
    # each fold drops the BatchNorm's weight and bias (2 C) and gives the conv a bias (C)
    assert report["params"] == plain - norm_channels, f"{report['params']} parameters after fusing, {plain} before"


def test_samples_must_exceed_warmup(capsys):
    from tools.benchmark import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["config.py", "--samples", "3", "--warmup", "3"])
    assert exit_info.value.code == 2 and "--samples (3) must exceed --warmup (3)" in capsys.readouterr().err
