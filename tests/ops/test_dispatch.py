"""Start-up validation of the SPARSEDRIVE_OPS_BACKEND_* variables (before the first forward)."""
import os

import pytest

from projects.mmdet3d_plugin import ops  # noqa: F401  registers every op
from projects.mmdet3d_plugin.ops import dispatch

VAR = "SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATION"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in [n for n in os.environ if n.startswith(dispatch.ENV_PREFIX)]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.mark.parametrize("value", ["reference", "cpu", " cpu "])
def test_valid_overrides_pass_on_cpu(monkeypatch, value):
    monkeypatch.setenv(VAR, value)
    dispatch.validate_env("cpu")


def test_unknown_backend_is_refused_at_start_up(monkeypatch):
    monkeypatch.setenv(VAR, "fast")
    with pytest.raises(ValueError, match=rf"{VAR}='fast' is not a backend of deformable_aggregation; use one of "
                                         r"reference, cpu, triton, npu"):
        dispatch.validate_env("cpu")


def test_unknown_op_is_refused_with_the_known_variables(monkeypatch):
    monkeypatch.setenv("SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATIO", "cpu")
    with pytest.raises(ValueError, match=rf"no op 'deformable_aggregatio'; the variables are {VAR}, "
                                         r"SPARSEDRIVE_OPS_BACKEND_FLASH_ATTENTION"):
        dispatch.validate_env("cpu")


@pytest.mark.parametrize("value,device_backend,needs", [
    ("triton", "cpu", "a CUDA GPU"), ("npu", "cpu", "an Ascend NPU"), ("npu", "cuda", "an Ascend NPU")])
def test_device_bound_backend_on_another_device_is_refused(monkeypatch, value, device_backend, needs):
    monkeypatch.setenv(VAR, value)
    with pytest.raises(RuntimeError, match=rf"{VAR}={value} needs {needs} but this process runs on {device_backend}"):
        dispatch.validate_env(device_backend)


def test_triton_is_allowed_on_its_device_and_in_interpreter_mode(monkeypatch):
    monkeypatch.setenv(VAR, "triton")
    dispatch.validate_env("cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    dispatch.validate_env("cpu")


def test_setup_backend_stops_in_one_line_on_a_bad_override(monkeypatch, capsys):
    from tools.cli_utils import setup_backend

    monkeypatch.setenv("SPARSEDRIVE_DEVICE", "cpu")
    monkeypatch.setenv(VAR, "triton")
    with pytest.raises(SystemExit) as info:
        setup_backend()
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {VAR}=triton needs a CUDA GPU but this process runs on cpu; unset it or use one of reference, cpu.")
