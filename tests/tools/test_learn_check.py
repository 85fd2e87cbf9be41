"""The learning check: its verdicts (fast) and the whole run on this machine (slow, as `make learn-check`)."""
import os
import subprocess
import sys

import pytest

from tools.learn_check import format_table, judge

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEARNED1 = {"img_bbox_NuScenes/mAP": 0.8, "mAP_normal": 0.7, "img_bbox_NuScenes/NDS": 0.6}
UNTRAINED1 = {"img_bbox_NuScenes/mAP": 0.0, "mAP_normal": 0.01, "img_bbox_NuScenes/NDS": 0.0}
UNTRAINED2 = dict(LEARNED1, car_min_ade_err=6.0, pedestrian_min_ade_err=3.0, L2=4.0, obj_box_col=0.0)
LEARNED2 = dict(LEARNED1, car_min_ade_err=0.8, pedestrian_min_ade_err=0.9, L2=0.5, obj_box_col=0.0)


def verdicts(rows):
    return {row[0].split(" (stage 2")[0]: row[4] for row in rows}


def test_every_head_that_learns_passes():
    result = verdicts(judge(UNTRAINED1, LEARNED1, UNTRAINED2, LEARNED2))
    assert result["detection mAP"] == result["map mAP"] == "pass"
    assert result["motion minADE car (m)"] == result["planning L2 avg (m)"] == "pass"
    assert result["detection NDS"] == "-", "informative rows carry no verdict"


@pytest.mark.parametrize("stage, key, value, row", [
    (1, "img_bbox_NuScenes/mAP", 0.3, "detection mAP"),
    (1, "mAP_normal", 0.45, "map mAP"),
    (2, "car_min_ade_err", 3.5, "motion minADE car (m)"),  # 3.5 > 6.0 / 2
    (2, "L2", float("nan"), "planning L2 avg (m)"),
])
def test_a_head_that_does_not_learn_fails(stage, key, value, row):
    after1, after2 = dict(LEARNED1), dict(LEARNED2)
    (after1 if stage == 1 else after2)[key] = value
    if stage == 1:
        after2[key] = value
    result = verdicts(judge(UNTRAINED1, after1, UNTRAINED2, after2))
    assert result[row] == "FAIL", result
    assert [r for r, v in result.items() if v == "FAIL"] == [row], "only that head fails"


def test_motion_without_any_matched_agent_is_not_a_pass():
    before2, after2 = dict(UNTRAINED2, car_min_ade_err=1.0), dict(LEARNED2, car_min_ade_err=1.0)
    row = "motion minADE car (m)"
    assert verdicts(judge(UNTRAINED1, LEARNED1, before2, after2))[row] == "FAIL (no agent matched)"
    assert verdicts(judge(UNTRAINED1, LEARNED1, before2, after2, "improvement"))[row] == "n/a (no agent matched)"


def test_improvement_mode_only_asks_for_the_right_direction():
    after1 = dict(LEARNED1, **{"img_bbox_NuScenes/mAP": 0.05, "mAP_normal": 0.1})
    after2 = dict(LEARNED2, car_min_ade_err=5.0, L2=3.9, **{"img_bbox_NuScenes/mAP": 0.05, "mAP_normal": 0.1})
    assert set(verdicts(judge(UNTRAINED1, after1, UNTRAINED2, after2, "improvement")).values()) == {"pass", "-"}
    worse = dict(after2, L2=4.5)
    assert verdicts(judge(UNTRAINED1, after1, UNTRAINED2, worse, "improvement"))["planning L2 avg (m)"] == "FAIL"
    assert verdicts(judge(UNTRAINED1, after1, UNTRAINED2, after2))["detection mAP"] == "FAIL"


def test_detection_that_collapses_in_stage_2_fails():
    after2 = dict(LEARNED2, **{"img_bbox_NuScenes/mAP": 0.2})
    assert verdicts(judge(UNTRAINED1, LEARNED1, UNTRAINED2, after2))["detection mAP"] == "FAIL"


def test_table_is_markdown_with_one_row_per_metric():
    text = format_table(judge(UNTRAINED1, LEARNED1, UNTRAINED2, LEARNED2))
    lines = text.splitlines()
    assert lines[0].startswith("| metric") and set(lines[1]) <= {"|", "-"}
    assert len(lines) == 2 + 7 and all(line.count("|") == 6 for line in lines)


@pytest.mark.slow
def test_short_learn_check_improves_every_head_and_writes_table_plot_and_render(tmp_path):
    """The driver end to end on a short schedule (CI budget): every gated metric moves the right way."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "tools/learn_check.py", "--work-dir", str(tmp_path), "--iters1", "64",
                           "--iters2", "24", "--check", "improvement"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    assert "learn-check passed" in proc.stdout
    table = (tmp_path / "learn_check.md").read_text()
    assert "FAIL" not in table and table.count("| pass") >= 3, table
    for name in ("loss_curves.png", "last_frame_bev.png", "last_frame.png"):
        assert (tmp_path / name).stat().st_size > 10_000, f"{name} is missing or empty"
