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


@pytest.mark.parametrize(
    "backend,configured,expected",
    [("cpu", True, False), ("cpu", False, False), ("npu", True, True), ("npu", False, False), ("cuda", True, True)],
)
def test_activation_checkpointing_is_off_on_cpu_and_as_configured_on_accelerators(
    monkeypatch, backend, configured, expected
):
    monkeypatch.delenv(device.WITH_CP_ENV_VAR, raising=False)
    monkeypatch.setattr(device, "get_backend", lambda: backend)
    assert device.activation_checkpointing(configured) is expected, f"{backend}, with_cp={configured}"


@pytest.mark.parametrize("backend,expected", [("cpu", True), ("cuda", False), ("npu", False)])
def test_channels_last_only_on_cpu(monkeypatch, backend, expected):
    monkeypatch.delenv(device.CHANNELS_LAST_ENV_VAR, raising=False)
    monkeypatch.setattr(device, "get_backend", lambda: backend)
    assert device.channels_last() is expected, f"channels-last on {backend}"


def test_backbone_settings_follow_their_overrides(monkeypatch):
    monkeypatch.setattr(device, "get_backend", lambda: "cpu")
    monkeypatch.setenv(device.WITH_CP_ENV_VAR, "1")
    monkeypatch.setenv(device.CHANNELS_LAST_ENV_VAR, "0")
    assert device.activation_checkpointing(False) is True, "SPARSEDRIVE_WITH_CP=1 must force checkpointing on"
    assert device.channels_last() is False, "SPARSEDRIVE_CHANNELS_LAST=0 must force it off"
    monkeypatch.setenv(device.CHANNELS_LAST_ENV_VAR, "yes")
    with pytest.raises(ValueError, match="SPARSEDRIVE_CHANNELS_LAST='yes'"):
        device.channels_last()


def test_npu_override_without_torch_npu_says_so_in_one_line(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("torch_npu") is not None:
        pytest.skip("torch_npu is installed")
    monkeypatch.setenv(device.ENV_VAR, "npu")
    with pytest.raises(RuntimeError, match=r"^SPARSEDRIVE_DEVICE=npu but torch_npu is not importable \(No module named "
                                           r"'torch_npu'\); install torch_npu / check the driver, or unset it\.$"):
        device.get_backend()
