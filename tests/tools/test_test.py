"""tools/test.py argument checks that run before inference: --eval names, --eval-options keys and values."""
import argparse

import pytest

from tools import test as test_tool


@pytest.fixture
def dataset():
    from projects.mmdet3d_plugin.datasets import NuScenes3DDataset

    return NuScenes3DDataset.__new__(NuScenes3DDataset)  # only the class's methods are needed


def args(**kwargs):
    base = dict(eval=None, eval_options=None, format_only=False)
    base.update(kwargs)
    return argparse.Namespace(**base)


def test_unknown_eval_metric_is_refused_with_the_valid_names(dataset, capsys):
    with pytest.raises(SystemExit) as info:
        test_tool.check_eval_args(args(eval=["foo"]), dataset, "work_dirs/x")
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --eval: metric 'foo' is not known; use bbox, det, tracking, map, motion, planning "
        "('bbox': every group the config's eval_mode enables).")


def test_eval_options_values_are_parsed_like_cfg_options(dataset):
    options = test_tool.check_eval_args(
        args(format_only=True, eval_options=["tracking=False", "jsonfile_prefix=out/json"]), dataset, "wd")
    assert options == {"tracking": False, "jsonfile_prefix": "out/json"}, f"'False' must be a bool: {options}"
    options = test_tool.check_eval_args(args(eval=["bbox"], eval_options=["show=True"]), dataset, "wd")
    assert options == {"show": True, "jsonfile_prefix": "wd"}, "jsonfile_prefix defaults to the work dir"


def test_unknown_eval_option_is_refused_before_inference(dataset, capsys):
    with pytest.raises(SystemExit):
        test_tool.check_eval_args(args(eval=["bbox"], eval_options=["trackin=True"]), dataset, "wd")
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: --eval-options trackin: not an option of this evaluation; use ") and \
        "jsonfile_prefix" in line, line


def test_options_reach_only_the_functions_that_take_them(dataset):
    kwargs = {"tracking": True, "jsonfile_prefix": "p", "show": False}
    assert test_tool.accepted_kwargs(dataset.format_results, kwargs) == {"tracking": True, "jsonfile_prefix": "p"}
    assert test_tool.accepted_kwargs(dataset.evaluate, kwargs) == {"jsonfile_prefix": "p", "show": False}
