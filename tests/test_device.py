"""The device layer: picks the CPU here, obeys the override, refuses unknown values."""
import pytest
import torch

from projects.mmdet3d_plugin import device


def test_picks_cpu_without_accelerator(monkeypatch):
    monkeypatch.delenv(device.ENV_VAR, raising=False)
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert device.get_backend() == "cpu", "no accelerator here, so the backend must be cpu"
    assert device.get_device() == torch.device("cpu")
    assert device.get_dist_backend() == "gloo"
    assert device.supports_fp16() is False, "CPU trains in fp32"


def test_override_forces_cpu(monkeypatch):
    monkeypatch.setenv(device.ENV_VAR, "CPU")
    assert device.get_backend() == "cpu", "the override is case-insensitive"


def test_unknown_override_is_refused(monkeypatch):
    monkeypatch.setenv(device.ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="SPARSEDRIVE_DEVICE='tpu' is not a backend"):
        device.get_backend()


def test_cuda_override_without_cuda_is_refused(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setenv(device.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        device.get_backend()


def test_choice_is_cached_until_reset(monkeypatch):
    monkeypatch.setenv(device.ENV_VAR, "cpu")
    assert device.get_backend() == "cpu"
    monkeypatch.setenv(device.ENV_VAR, "bogus")
    assert device.get_backend() == "cpu", "the backend is chosen once per process"
    device.reset_backend_cache()
    with pytest.raises(ValueError):
        device.get_backend()


@pytest.mark.parametrize("backend,expected", [("npu", "hccl"), ("cuda", "nccl"), ("cpu", "gloo")])
def test_dist_backend_per_device(backend, expected):
    assert device.DIST_BACKENDS[backend] == expected
