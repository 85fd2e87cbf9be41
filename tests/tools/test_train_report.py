"""The final report: step time from the last 10 logged times, FPS, AMOTA and L2 from validation lines."""
import json

from tools.analysis_tools import train_report


def _write_log(folder, entries):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "20260101_000000.log.json", "w") as f:
        f.write(json.dumps({"env_info": "x"}) + "\n")
        for e in entries:
            f.write(json.dumps(e) + "\n")


def test_report_values_and_labels(tmp_path):
    stage1 = [{"mode": "train", "iter": i, "time": 10.0} for i in range(5)]
    stage1 += [{"mode": "train", "iter": 10 + i, "time": 2.0} for i in range(10)]
    stage1 += [{"mode": "val", "iter": 20, "img_bbox_NuScenes/amota": 0.25}]
    stage2 = [{"mode": "train", "iter": i, "time": 1.5} for i in range(3)]
    stage2 += [{"mode": "val", "iter": 3, "L2": 0.75}]
    _write_log(tmp_path / "s1", stage1)
    _write_log(tmp_path / "s2", stage2)
    text = train_report.build_report(
        "full", 123.4, train_report.read_json_log(str(tmp_path / "s1")),
        train_report.read_json_log(str(tmp_path / "s2")), 64, 48,
    )
    lines = text.splitlines()
    assert lines[0] == "[INFO] Final Result"
    assert " - End to End Time : 123s" in lines
    assert " - Stage1 Time avg per batch : 2.0000s" in lines, "only the last 10 logged times count"
    assert " - Stage1 Final Performance images/sec : 32.000" in lines, "64 / 2.0 s"
    assert " - Stage2 Final Performance images/sec : 32.000" in lines, "48 / 1.5 s"
    assert " - Stage1 AMOTA : 0.2500" in lines
    assert " - Stage2 L2 : 0.7500" in lines


def test_performance_report_has_no_accuracy_and_tolerates_missing_logs(tmp_path):
    text = train_report.build_report("performance", 5, [], [], 64, 48)
    assert "AMOTA" not in text and "L2" not in text
    lines = text.splitlines()
    assert " - Stage1 Time avg per batch : N/A" in lines, "no unit after N/A (it printed 'N/As')"
    assert " - Stage2 Final Performance images/sec : N/A" in lines
    assert lines[-1].startswith("[WARNING] step time N/A: no step time was logged") and \
        "SPARSEDRIVE_STOP_AT_ITER" in lines[-1], f"the report must say why there is no step time: {lines[-1]}"


def test_report_gives_no_reason_when_step_times_exist(tmp_path):
    entries = [{"mode": "train", "iter": 1, "time": 2.0}]
    text = train_report.build_report("performance", 5, entries, entries, 64, 48)
    assert "WARNING" not in text and " - Stage2 Time avg per batch : 2.0000s" in text.splitlines()
