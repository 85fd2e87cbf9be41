"""tools/python_env.sh: which interpreter the launch scripts use, and the one-line stop when it lacks the deps."""
import os
import stat
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPER = os.path.join(ROOT, "tools", "python_env.sh")
MALLOC_HELPER = os.path.join(ROOT, "tools", "host_malloc.sh")
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_")


def _stub(path, stderr="", rc=0):
    """An executable that appends its path to calls.log beside its bin/, prints `stderr` and exits with `rc`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    log = os.path.join(os.path.dirname(os.path.dirname(path)), "calls.log")
    with open(path + ".err", "w") as f:
        f.write(stderr)
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho \"$0\" >> '%s'\ncat '%s.err' >&2\nexit %d\n" % (log, path, rc))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return str(path)


def _source(repo, bin_dir, **env):
    """Source the helper under `sh -eu` from a repository root `repo`; returns (rc, PYTHON it chose, stderr)."""
    os.makedirs(os.path.join(str(repo), "tools"), exist_ok=True)
    if not os.path.exists(os.path.join(str(repo), "tools", "host_malloc.sh")):
        os.symlink(MALLOC_HELPER, os.path.join(str(repo), "tools", "host_malloc.sh"))
    full = {"PATH": "%s:/usr/bin:/bin" % bin_dir, "ROOT": str(repo), **env}
    proc = subprocess.run(["sh", "-euc", '. "$1"; echo "PYTHON=$PYTHON"', "sh", HELPER],
                          env=full, capture_output=True, text=True)
    chosen = [line[7:] for line in proc.stdout.splitlines() if line.startswith("PYTHON=")]
    return proc.returncode, (chosen[0] if chosen else None), proc.stderr


def test_prefers_the_repository_venv_over_python3(tmp_path):
    venv_python = _stub(str(tmp_path / "repo" / ".venv" / "bin" / "python"))
    _stub(str(tmp_path / "sys" / "bin" / "python3"))
    rc, chosen, err = _source(tmp_path / "repo", tmp_path / "sys" / "bin")
    assert (rc, chosen) == (0, venv_python), err


def test_falls_back_to_python3_without_a_venv(tmp_path):
    (tmp_path / "repo").mkdir()
    _stub(str(tmp_path / "sys" / "bin" / "python3"))
    rc, chosen, err = _source(tmp_path / "repo", tmp_path / "sys" / "bin")
    assert (rc, chosen) == (0, "python3"), err


def test_an_explicit_python_wins(tmp_path):
    _stub(str(tmp_path / "repo" / ".venv" / "bin" / "python"))
    mine = _stub(str(tmp_path / "mine" / "bin" / "python"))
    rc, chosen, err = _source(tmp_path / "repo", tmp_path / "mine" / "bin", PYTHON=mine)
    assert (rc, chosen) == (0, mine), err


def test_missing_dependencies_stop_with_one_line(tmp_path):
    traceback = "Traceback (most recent call last):\n  File x\nModuleNotFoundError: No module named 'mmdet'"
    _stub(str(tmp_path / "repo" / ".venv" / "bin" / "python"), stderr=traceback, rc=1)
    rc, chosen, err = _source(tmp_path / "repo", tmp_path / "sys" / "bin")
    assert rc == 2 and chosen is None, "the caller must stop with exit code 2"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "No module named 'mmdet'" in lines[0] and "make setup" in lines[0] and "requirements.txt" in lines[0]


def test_the_import_check_runs_once_per_interpreter(tmp_path):
    venv_python = _stub(str(tmp_path / "repo" / ".venv" / "bin" / "python"))
    log = tmp_path / "repo" / ".venv" / "calls.log"
    _source(tmp_path / "repo", tmp_path / "sys" / "bin")
    assert log.read_text().count(venv_python) == 1, "the first script checks the imports"
    _source(tmp_path / "repo", tmp_path / "sys" / "bin", SPARSEDRIVE_PYTHON_CHECKED=venv_python)
    assert log.read_text().count(venv_python) == 1, "a script started by a checked one must not check again"


def _malloc_env(**env):
    """Source tools/host_malloc.sh under `sh -eu`; returns (rc, the MALLOC_* it exports, stderr)."""
    full = {"PATH": "/usr/bin:/bin", **env}
    proc = subprocess.run(["sh", "-euc", '. "$1"; env', "sh", MALLOC_HELPER], env=full, capture_output=True, text=True)
    exported = dict(line.split("=", 1) for line in proc.stdout.splitlines() if line.startswith("MALLOC_"))
    return proc.returncode, exported, proc.stderr


def test_cpu_runs_keep_freed_memory_in_the_heap():
    for env in ({"SPARSEDRIVE_DEVICE": "cpu"}, {"SPARSEDRIVE_HOST_MALLOC": "tuned", "SPARSEDRIVE_DEVICE": "npu"}):
        rc, exported, err = _malloc_env(**env)
        assert rc == 0, err
        assert sorted(exported) == sorted(MALLOC_VARS), f"{env}: exported {exported}"
        assert int(exported["MALLOC_MMAP_THRESHOLD_"]) == 32 * 2**20, "glibc's largest mmap threshold"


def test_accelerator_runs_and_the_opt_out_keep_glibcs_defaults():
    for env in ({"SPARSEDRIVE_DEVICE": "npu"}, {"SPARSEDRIVE_DEVICE": "cuda"},
                {"SPARSEDRIVE_DEVICE": "cpu", "SPARSEDRIVE_HOST_MALLOC": "default"}):
        rc, exported, err = _malloc_env(**env)
        assert (rc, exported) == (0, {}), f"{env}: {exported} {err}"


def test_a_malloc_value_the_user_set_wins():
    rc, exported, err = _malloc_env(SPARSEDRIVE_DEVICE="cpu", MALLOC_TOP_PAD_="4096")
    assert rc == 0 and exported["MALLOC_TOP_PAD_"] == "4096", (exported, err)


def test_a_bad_malloc_setting_stops_with_one_line():
    rc, exported, err = _malloc_env(SPARSEDRIVE_HOST_MALLOC="fast")
    assert rc == 2 and not exported, "the caller must stop with exit code 2"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SPARSEDRIVE_HOST_MALLOC='fast'" in lines[0] and "auto, tuned or default" in lines[0]
