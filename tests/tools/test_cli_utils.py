"""Start-up of the CLIs: --cfg-options checking, config errors, environment values, noise, debug switch."""
import os
import subprocess
import sys

import pytest

from tools import cli_utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = """
data = dict(samples_per_gpu=2, workers_per_gpu=0, train=dict(type="X", ann_file="a.pkl"))
runner = dict(type="IterBasedRunner", max_iters=100)
optimizer = dict(type="AdamW", lr=2e-4)
pipeline = [dict(type="A", size=1), dict(type="B")]
fp16 = dict(loss_scale=32.0)
with_cp = True
load_from = None
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny_config.py"
    path.write_text(CONFIG)
    return str(path)


def one_error_line(capsys, call):
    """Run ``call``, expect exit 2 and exactly one ``error:`` line on stderr; return that line."""
    with pytest.raises(SystemExit) as info:
        call()
    assert info.value.code == 2, f"user errors exit 2, got {info.value.code}"
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one error line, got {lines}"
    return lines[0]


def test_cfg_options_are_merged_with_parsed_values(config):
    cfg = cli_utils.load_config(config, ["runner.max_iters=5", "optimizer.lr=1e-3", "with_cp=False",
                                         "pipeline.0.size=3", "load_from=ckpt/x.pth"])
    assert cfg.runner.max_iters == 5 and isinstance(cfg.runner.max_iters, int), "numbers must be parsed"
    assert cfg.optimizer.lr == 1e-3 and cfg.with_cp is False, "floats and bools must be parsed"
    assert cfg.pipeline[0]["size"] == 3, "list items are addressed by index"
    assert cfg.load_from == "ckpt/x.pth", "a None value may become a string"


def test_cfg_options_misspelt_key_is_refused_with_the_closest(config, capsys):
    line = one_error_line(capsys, lambda: cli_utils.load_config(config, ["data.samples_per_gpuu=2"]))
    assert "data has no key 'samples_per_gpuu'" in line and "did you mean data.samples_per_gpu?" in line, line
    assert "+data.samples_per_gpuu=VALUE" in line, f"the error must say how to add a new key: {line}"


def test_cfg_options_missing_top_level_key_is_refused(config, capsys):
    line = one_error_line(capsys, lambda: cli_utils.load_config(config, ["runer.max_iters=2"]))
    assert "the config has no key 'runer'; did you mean runner?" in line, line


def test_cfg_options_plus_prefix_adds_a_new_key(config):
    cfg = cli_utils.load_config(config, ["+data.persistent_workers=True", "+custom.depth=3"])
    assert cfg.data.persistent_workers is True and cfg.custom.depth == 3, "'+' keys must be added"
    assert cli_utils.cfg_option_keys(["+custom.depth=3", "runner.max_iters=2"]) == {"custom.depth", "runner.max_iters"}


@pytest.mark.parametrize("option,expected", [
    ("runner.max_iters=abc", "runner.max_iters='abc': expected a number (the config has 100)"),
    ("fp16.loss_scale=big", "fp16.loss_scale='big': expected a number (the config has 32.0)"),
    ("with_cp=yes", "with_cp='yes': expected True or False"),
    ("runner.max_iters=True", "expected a number"),
    ("optimizer.lr.x=1", "optimizer.lr is float 0.0002, which has no key 'x'"),
    ("runner", "--cfg-options 'runner' is not KEY=VALUE"),
    ("=3", "--cfg-options '=3' is not KEY=VALUE"),
])
def test_cfg_options_wrong_values_are_refused_in_one_line(config, capsys, option, expected):
    line = one_error_line(capsys, lambda: cli_utils.load_config(config, [option]))
    assert expected in line, f"{option}: {line}"


def test_missing_config_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, lambda: cli_utils.load_config("projects/configs/nope.py"))
    assert f"looked at {tmp_path}/projects/configs/nope.py nor {ROOT}/projects/configs/nope.py" in line, line


def test_relative_config_resolves_against_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_utils.resolve_path("projects/configs/sparsedrive_small_stage1.py") == os.path.join(
        ROOT, "projects/configs/sparsedrive_small_stage1.py"), "a config missing here must be found in the repo"
    (tmp_path / "local.py").write_text("x = 1\n")
    assert cli_utils.resolve_path("local.py") == "local.py", "a file in the current directory wins"


@pytest.mark.parametrize("env,expected", [
    ({"SPARSEDRIVE_BATCH_SIZE": "1", "SPARSEDRIVE_NUM_GPUS": "2"},
     "SPARSEDRIVE_BATCH_SIZE=1 is smaller than the process count SPARSEDRIVE_NUM_GPUS=2"),
    ({"SPARSEDRIVE_BATCH_SIZE": "abc"}, "SPARSEDRIVE_BATCH_SIZE='abc' must be a positive integer"),
    ({"SPARSEDRIVE_NUM_GPUS": "0"}, "SPARSEDRIVE_NUM_GPUS='0' must be a positive integer"),
])
def test_bad_batch_environment_is_refused_before_the_config_runs(config, capsys, monkeypatch, env, expected):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    line = one_error_line(capsys, lambda: cli_utils.load_config(config))
    assert expected in line, line


@pytest.mark.slow
def test_real_config_with_batch_below_process_count_is_one_line():
    """Through the CLI: the real config divides by the per-process batch (ZeroDivisionError before the check)."""
    env = dict(os.environ, SPARSEDRIVE_BATCH_SIZE="4", SPARSEDRIVE_NUM_GPUS="8")
    proc = subprocess.run([sys.executable, "tools/train.py", "projects/configs/sparsedrive_small_stage1.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: global batch SPARSEDRIVE_BATCH_SIZE=4"), \
        proc.stderr


@pytest.mark.slow
def test_config_that_raises_gives_one_line_and_no_stray_tempfile_traceback(tmp_path):
    bad = tmp_path / "bad_config.py"
    bad.write_text("import os\nvalue = 1 / 0\n")
    code = (f"import sys; sys.path.insert(0, {ROOT!r}); from tools.cli_utils import load_config, quiet_startup_noise; "
            f"quiet_startup_noise(); load_config({str(bad)!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert lines == [f"error: config {bad} cannot be loaded: ZeroDivisionError: division by zero"], \
        f"expected one line, no 'Exception ignored ... tempfile' traceback:\n{proc.stderr}"


def test_stop_at_iter_must_be_positive(monkeypatch, capsys):
    from tools import train

    monkeypatch.delenv("SPARSEDRIVE_STOP_AT_ITER", raising=False)
    assert train.parse_args(["c.py", "--stop-at-iter", "7"]).stop_at_iter == 7
    assert train.parse_args(["c.py"]).stop_at_iter is None, "unset means the full schedule"
    line = one_error_line(capsys, lambda: train.parse_args(["c.py", "--stop-at-iter", "-5"]))
    assert "--stop-at-iter -5" in line and "positive integer" in line, line
    for value in ("0", "abc", "-3", "1.5"):
        monkeypatch.setenv("SPARSEDRIVE_STOP_AT_ITER", value)
        line = one_error_line(capsys, lambda: train.parse_args(["c.py"]))
        assert f"SPARSEDRIVE_STOP_AT_ITER={value!r} must be a positive integer" in line, line
    monkeypatch.setenv("SPARSEDRIVE_STOP_AT_ITER", "12")
    assert train.parse_args(["c.py"]).stop_at_iter == 12, "the environment value is used when the flag is absent"


def test_run_main_prints_one_line_and_the_debug_switch_shows_the_traceback(monkeypatch, capsys):
    def main():
        raise FileNotFoundError("data/x.pkl does not exist")

    monkeypatch.delenv("SPARSEDRIVE_DEBUG", raising=False)
    assert one_error_line(capsys, lambda: cli_utils.run_main(main)) == "error: data/x.pkl does not exist"
    monkeypatch.setenv("SPARSEDRIVE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli_utils.run_main(main)


def test_run_main_names_a_missing_dependency_and_the_interpreter_in_one_line(capsys):
    def main():
        import sparsedrive_missing_requirement  # noqa: F401

    line = one_error_line(capsys, lambda: cli_utils.run_main(main))
    assert line.startswith(f"error: {sys.executable} cannot import sparsedrive_missing_requirement;"), line
    assert "make setup" in line and "requirements.txt" in line, line


def test_run_main_keeps_the_traceback_of_a_missing_module_of_our_own():
    def main():
        import projects.mmdet3d_plugin.no_such_module  # noqa: F401

    with pytest.raises(ModuleNotFoundError, match="projects.mmdet3d_plugin.no_such_module"):
        cli_utils.run_main(main)


def test_writable_check_refuses_a_read_only_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        target = "/proc/sparsedrive_cannot_write_here"  # root writes through file modes, not into /proc
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        target = str(tmp_path / "ro" / "out")
    line = one_error_line(capsys, lambda: cli_utils.check_writable(target, "--work-dir"))
    assert f"--work-dir {target} is not writable" in line, line
    cli_utils.check_writable(str(tmp_path / "new" / "dir"), "--work-dir")
    assert (tmp_path / "new" / "dir").is_dir(), "a missing folder is created"


NOISE_CODE = """
import sys, warnings
sys.path.insert(0, {root!r})
if {quiet}:
    from tools.cli_utils import quiet_startup_noise
    quiet_startup_noise()
import mmcv
from mmcv.runner import get_dist_info
warnings.warn("a real warning stays visible")
"""


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True])
def test_known_startup_noise_is_silenced_once_and_real_warnings_stay(tmp_path, quiet):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("the CUDA notice only appears without a CUDA runtime")
    env = dict(os.environ, CUDA_HOME=str(tmp_path))  # an existing CUDA_HOME makes torch print its notice
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-c", NOISE_CODE.format(root=ROOT, quiet=quiet)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "a real warning stays visible" in proc.stderr, "real warnings must not be hidden"
    noisy = "No CUDA runtime is found" in proc.stderr or "MMCV will release v2.0.0" in proc.stderr
    assert noisy != quiet, f"quiet={quiet}, stderr:\n{proc.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("env,expected", [
    ({"SPARSEDRIVE_DEVICE": "tpu"}, "error: SPARSEDRIVE_DEVICE='tpu' is not a backend"),
    ({"SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATION": "fast"},
     "error: SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATION='fast' is not a backend of deformable_aggregation"),
])
def test_launch_script_stops_on_a_bad_backend_variable_in_one_line(tmp_path, env, expected):
    full_env = dict(os.environ, PYTHON=sys.executable, **env)
    proc = subprocess.run(["bash", "test/train_8p_full.sh", "1", "1", "1"], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and expected in proc.stderr, proc.stderr


def test_mmcv_seeding_gives_the_numbers_of_the_former_own_seeding():
    """tools/train.py and tools/test.py seed with mmcv's set_random_seed (was a copy here): same draws."""
    import random

    import numpy as np
    import torch
    from mmcv.runner import set_random_seed

    from tools import test as test_tool, train

    for module in (train, test_tool):
        assert not hasattr(module, "set_random_seed"), f"{module.__name__} must not keep its own seeding"
    set_random_seed(123, deterministic=True)
    draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    expected = (random.Random(123).random(), np.random.RandomState(123).rand(3).tolist(),
                torch.rand(3, generator=torch.Generator().manual_seed(123)).tolist())
    assert draws == expected, "python, numpy and torch must all be seeded with the seed itself"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark, "deterministic kernels"
