"""Smoke test of tools/benchmarks/benchmark_model_step.py on the reduced stage-1 config."""
import pytest
import torch

from tests.models.batch_factory import REDUCED_STAGE1_CONFIG


@pytest.mark.slow
def test_benchmark_reports_every_phase_and_the_ratios_to_the_floor(tmp_path):
    from tools.benchmarks.benchmark_model_step import main

    threads = torch.get_num_threads()
    try:
        report = main(
            ["--config", str(REDUCED_STAGE1_CONFIG), "--image-hw", "64", "176", "--repeats", "1", "--threads", "1",
             "--out", str(tmp_path / "bench.json")]
        )
    finally:
        torch.set_num_threads(threads)
    assert set(report["train_step0_s"]) == {"backbone", "heads", "losses", "backward", "optimiser", "total",
                                           "total_cpu"}, f"training phases {sorted(report['train_step0_s'])}"
    assert set(report["infer_frame1_s"]) == {"backbone", "heads", "post_process", "total", "total_cpu"}
    assert "infer_frame2_s" not in report and "train_step2_s" not in report, "one warm-up + --repeats 1 runs"
    for name, timed in (("infer", "infer_frame1_s"), ("train", "train_step1_s")):
        assert report[f"{name}_median_s"] == report[timed], f"the median of one {name} run is that run"
        assert report[f"floor_{name}_s"] > 0, f"the {name} floor must be measured in the same run"
        ratio = report[timed]["total"] / report[f"floor_{name}_s"]
        assert report[f"{name}_ratio"] == pytest.approx(ratio, abs=2e-3), f"{name}_ratio is model / floor"
    assert report["train_peak_rss_gib"] >= report["infer_peak_rss_gib"] > 0, "peak RSS is monotone and positive"
    assert (tmp_path / "bench.json").exists(), "--out must write the JSON report"


def test_floor_is_the_configs_backbone_and_neck_without_checkpointing():
    from mmcv import Config
    from mmdet.models.backbones import ResNet
    from mmdet.models.necks import FPN

    from tools.benchmarks.benchmark_model_step import build_floor

    cfg = Config.fromfile(str(REDUCED_STAGE1_CONFIG))
    assert cfg.model.img_backbone.with_cp, "the config checkpoints activations"
    floor = build_floor(cfg)
    assert isinstance(floor[0], ResNet) and floor[0].depth == 50 and isinstance(floor[1], FPN), f"floor {floor}"
    assert not any(getattr(m, "with_cp", False) for m in floor.modules()), "the floor must not recompute"
    outs = floor(torch.randn(2, 3, 64, 96))
    assert [o.shape[1:] for o in outs] == [(256, 16, 24), (256, 8, 12), (256, 4, 6), (256, 2, 3)], "FPN levels"
