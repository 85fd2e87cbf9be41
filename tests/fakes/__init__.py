"""Fake Ascend stack (``torch_npu``, ``mx_driving``) so the NPU code paths run, checked, on CPU tensors.

What ``install`` changes (all undone by the monkeypatch that it is given):
* ``sys.modules``: ``torch_npu`` (+ ``.optim``, ``.contrib``, ``.contrib.transfer_to_npu``) and
  ``mx_driving`` (+ ``.patcher``) become the fakes in this package;
* ``torch.npu``: a namespace with is_available / device_count / set_device / synchronize / ...;
* ``SPARSEDRIVE_DEVICE=npu``, so ``device.get_backend()`` is ``'npu'`` (is_npu(), hccl, fused optimiser);
  ``device.get_device()`` returns ``cpu`` because CPU-only torch cannot create ``npu`` tensors;
* ``ops.dispatch``: CPU tensors count as NPU tensors, so every op takes its NPU backend, whose
  calls land in the fakes (recorded in ``torch_npu.CALLS`` / ``mx_driving.CALLS``).

Use it in a test module with ``from tests.fakes import fake_npu`` and a ``fake_npu`` argument, or
outside pytest (a whole training step on CPU) with ``with fake_npu_environment(): ...``.
"""
import contextlib
import sys
from typing import Iterator

import pytest
import torch

from projects.mmdet3d_plugin import device
from projects.mmdet3d_plugin.ops import dispatch, npu_patches

from . import mx_driving as fake_mx_driving
from . import torch_npu as fake_torch_npu


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the fakes in place through ``monkeypatch`` (see the module docstring)."""
    modules = {"torch_npu": fake_torch_npu, "mx_driving": fake_mx_driving}
    modules.update(fake_torch_npu.submodules())
    modules.update(fake_mx_driving.submodules())
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(fake_torch_npu, "optim", modules["torch_npu.optim"], raising=False)
    monkeypatch.setattr(fake_torch_npu, "contrib", modules["torch_npu.contrib"], raising=False)
    monkeypatch.setattr(fake_mx_driving, "patcher", modules["mx_driving.patcher"], raising=False)
    monkeypatch.setattr(torch, "npu", fake_torch_npu.npu, raising=False)

    monkeypatch.setenv(device.ENV_VAR, "npu")
    monkeypatch.setattr(device, "get_device", lambda local_rank=None: torch.device("cpu"))
    device.reset_backend_cache()

    monkeypatch.setattr(dispatch, "_CHOSEN", {})
    monkeypatch.setattr(dispatch, "_ALIASES", {"cpu": "npu"})
    monkeypatch.setattr(npu_patches, "_APPLIED", False)
    monkeypatch.setattr(fake_torch_npu, "CALLS", [])
    monkeypatch.setattr(fake_mx_driving, "CALLS", [])
    monkeypatch.setattr(fake_mx_driving, "APPLIED", [])


@contextlib.contextmanager
def fake_npu_environment() -> Iterator[None]:
    """The fakes for the duration of a ``with`` block (outside pytest fixtures)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        install(monkeypatch)
        try:
            yield
        finally:
            device.reset_backend_cache()
    device.reset_backend_cache()


@pytest.fixture
def fake_npu(monkeypatch: pytest.MonkeyPatch):
    """The fakes for one test; yields a namespace with the fake modules (``.torch_npu``, ``.mx_driving``)."""
    install(monkeypatch)
    yield FakeModules
    device.reset_backend_cache()


class FakeModules:
    """Handles on the fake modules; read their ``CALLS`` / ``APPLIED`` through these attributes."""

    torch_npu = fake_torch_npu
    mx_driving = fake_mx_driving
