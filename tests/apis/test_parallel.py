"""Distributed wrapper: a DDP forward (what distributed evaluation calls) runs the module on torch 2.x."""
import pytest
import torch
import torch.distributed as dist

from projects.mmdet3d_plugin.apis.parallel import wrap_model


class _Detector(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, img: torch.Tensor, return_loss: bool = True) -> torch.Tensor:
        return self.linear(img) if not return_loss else self.linear(img).sum()


@pytest.fixture
def single_process_group(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_distributed_forward_runs_the_module(single_process_group, monkeypatch):
    monkeypatch.setenv("SPARSEDRIVE_DEVICE", "cpu")
    torch.manual_seed(0)
    module = _Detector()
    model = wrap_model(module, distributed=True)
    img = torch.randn(4, 3)
    with torch.no_grad():
        out = model(return_loss=False, img=img)
    assert torch.allclose(out, module.linear(img)), "DDP forward must return the module's output"
