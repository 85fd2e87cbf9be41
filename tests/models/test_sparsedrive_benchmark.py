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


def test_host_malloc_sides_differ_only_in_the_malloc_settings(monkeypatch):
    from tools.benchmarks.benchmark_host_malloc import side_env

    monkeypatch.setenv("MALLOC_TOP_PAD_", "4096")  # a value from the caller must not leak into either side
    default, tuned = side_env("default"), side_env("tuned")
    assert not [k for k in default if k.startswith("MALLOC_")], "the default side runs with glibc's defaults"
    assert int(tuned["MALLOC_MMAP_THRESHOLD_"]) == 32 * 2**20 and int(tuned["MALLOC_TOP_PAD_"]) == 2**30
    same = {k for k in set(default) | set(tuned) if not k.startswith("MALLOC_") and k != "SPARSEDRIVE_HOST_MALLOC"}
    assert all(default.get(k) == tuned.get(k) for k in same), "both sides must otherwise share the environment"


@pytest.mark.slow
def test_host_malloc_benchmark_times_both_sides_in_their_own_processes(tmp_path):
    from tools.benchmarks.benchmark_host_malloc import main

    summary = main(["--rounds", "1", "--repeats", "1", "--skip-train", "--out", str(tmp_path / "malloc.json"), "--",
                    "--config", str(REDUCED_STAGE1_CONFIG), "--image-hw", "64", "176", "--threads", "1"])
    seconds = summary["infer"]["seconds"]
    assert seconds["default"] > 0 and seconds["tuned"] > 0, seconds
    assert summary["infer"]["speedup"] == pytest.approx(seconds["default"] / seconds["tuned"], abs=2e-3)
    assert summary["host_malloc"]["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20), "the tuned side's settings"
    assert "train" not in summary and (tmp_path / "malloc.json").exists()
