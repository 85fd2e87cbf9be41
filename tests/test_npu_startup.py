"""NPU start-up: ``tools/cli_utils.setup_backend`` patches third-party code once on npu only, and the launch
scripts export DrivingSDK's Ascend environment variables on npu only."""
import os
import shutil
import stat
import subprocess

import pytest

from projects.mmdet3d_plugin import device
from projects.mmdet3d_plugin.ops import npu_patches
from tests.fakes import fake_npu  # noqa: F401  (pytest fixture)
from tools.cli_utils import setup_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASCEND_ENV = {
    "ASCEND_SLOG_PRINT_TO_STDOUT": "0",
    "ASCEND_GLOBAL_LOG_LEVEL": "3",
    "ASCEND_GLOBAL_EVENT_ENABLE": "0",
    "TASK_QUEUE_ENABLE": "2",
    "CPU_AFFINITY_CONF": "1",
    "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True",
}


def test_setup_backend_applies_the_npu_patches_once(fake_npu, monkeypatch):
    monkeypatch.setattr(fake_npu.torch_npu.npu.config, "allow_internal_format", True)
    assert setup_backend() == "npu", "the fakes must select the npu backend"
    expected = [
        (module, name) for module, names in npu_patches.BUILTIN_PATCHES.items() for name in names
    ]
    assert fake_npu.mx_driving.APPLIED == expected, f"patches applied: {fake_npu.mx_driving.APPLIED}"
    assert fake_npu.torch_npu.npu.config.allow_internal_format is False, "NPU private tensor formats must be off"
    assert setup_backend() == "npu" and fake_npu.mx_driving.APPLIED == expected, "a second start-up re-applied patches"


def test_setup_backend_on_cpu_patches_nothing(fake_npu, monkeypatch):
    monkeypatch.setenv(device.ENV_VAR, "cpu")
    device.reset_backend_cache()
    assert setup_backend() == "cpu", "SPARSEDRIVE_DEVICE=cpu must win over an importable torch_npu"
    assert not fake_npu.mx_driving.APPLIED, f"cpu start-up applied patches: {fake_npu.mx_driving.APPLIED}"
    assert npu_patches._APPLIED is False, "cpu start-up must not mark the NPU patches as applied"


def _launch_until_training(tmp_path, backend: str) -> dict:
    """Run ``test/train_8p_performance.sh 1 1 1`` from a copy of the scripts up to the training launch.

    A stub ``$PYTHON`` answers the backend query with ``backend`` and, when torchrun would start, records
    its environment and fails, so nothing trains. Returns the environment the training would have had.
    """
    for rel in ("test/train_8p_performance.sh", "test/train_stages.sh", "test/parse_args.sh", "test/env_npu.sh",
                "tools/dist_train.sh", "tools/dist_launch.sh", "tools/python_env.sh", "tools/host_malloc.sh"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), tmp_path / rel)
    dump = tmp_path / "training_env"
    stub = tmp_path / "python_stub"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = "-c" ]; then echo {backend}; exit 0; fi\n'
        f'env > "{dump}"\n'
        "exit 1\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHON": str(stub)}
    proc = subprocess.run(
        ["bash", str(tmp_path / "test/train_8p_performance.sh"), "1", "1", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert dump.exists(), f"the script never reached the training launch: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    assert proc.returncode != 0, "the stubbed training fails, so the script must fail"
    return dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)


@pytest.mark.parametrize("backend", ["npu", "cuda", "cpu"])
def test_launch_scripts_export_ascend_settings_on_npu_only(tmp_path, backend):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    env = _launch_until_training(tmp_path, backend)
    for key, value in ASCEND_ENV.items():
        if backend == "npu":
            assert env.get(key) == value, f"{key}={env.get(key)!r} on npu, expected {value!r}"
        else:
            assert key not in env, f"{key} must not be set on {backend}"
    assert env.get("SPARSEDRIVE_STOP_AT_ITER") == "1000", "the performance run stops at 1000 iterations"
