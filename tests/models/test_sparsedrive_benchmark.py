"""Smoke test of tools/benchmarks/benchmark_model_step.py on the reduced stage-1 config."""
import pytest
import torch

from tests.models.batch_factory import REDUCED_STAGE1_CONFIG


@pytest.mark.slow
def test_benchmark_reports_every_phase(tmp_path):
    from tools.benchmarks.benchmark_model_step import main

    threads = torch.get_num_threads()
    try:
        report = main(
            ["--config", str(REDUCED_STAGE1_CONFIG), "--image-hw", "64", "176", "--steps", "1", "--threads", "1",
             "--out", str(tmp_path / "bench.json")]
        )
    finally:
        torch.set_num_threads(threads)
    assert set(report["train_step0_s"]) == {"backbone", "heads", "losses", "backward", "optimiser", "total",
                                           "total_cpu"}, f"training phases {sorted(report['train_step0_s'])}"
    assert set(report["infer_frame1_s"]) == {"backbone", "heads", "post_process", "total", "total_cpu"}
    assert report["train_peak_rss_gib"] >= report["infer_peak_rss_gib"] > 0, "peak RSS is monotone and positive"
    assert (tmp_path / "bench.json").exists(), "--out must write the JSON report"
