"""ops.optim: AdamW builder and gradient clipping on CPU (the NPU variants are in test_npu_backends.py)."""
import pytest
import torch

from projects.mmdet3d_plugin.ops import build_adamw, clip_grad_norm


def _model_with_grads(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model(torch.randn(3, 4)).pow(2).sum().backward()
    return model


TORCH_HAS_FUSED_CPU_ADAMW = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)  # added in 2.4


def test_build_adamw_on_cpu_steps_like_torch_adamw_with_param_groups():
    model, twin = _model_with_grads(), _model_with_grads()
    groups = [{"params": list(model[0].parameters()), "lr": 1e-3}, {"params": list(model[2].parameters())}]
    optimizer = build_adamw(groups, lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01, eps=1e-6)
    assert type(optimizer) is torch.optim.AdamW, f"cpu optimizer is {type(optimizer).__name__}"
    assert bool(optimizer.defaults.get("fused")) == TORCH_HAS_FUSED_CPU_ADAMW, "fused kernels where torch has them"
    reference = torch.optim.AdamW(
        [{"params": list(twin[0].parameters()), "lr": 1e-3}, {"params": list(twin[2].parameters())}],
        lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01, eps=1e-6,
    )
    for _ in range(3):
        optimizer.step()
        reference.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg="build_adamw's step differs from AdamW's")


def test_build_adamw_rejects_empty_params():
    with pytest.raises(ValueError, match="params is empty"):
        build_adamw([], lr=1e-3)


@pytest.mark.parametrize("pass_optimizer", [False, True])
def test_clip_grad_norm_matches_torch_and_returns_norm_before_clipping(pass_optimizer):
    model, twin = _model_with_grads(), _model_with_grads()
    expected = torch.nn.utils.clip_grad_norm_(twin.parameters(), max_norm=0.5)
    target = torch.optim.AdamW(model.parameters()) if pass_optimizer else model.parameters()
    norm = clip_grad_norm(target, max_norm=0.5, norm_type=2)
    assert torch.allclose(norm, expected), f"norm {norm} != torch's {expected}"
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a.grad, b.grad), "clipped gradients differ from torch's"


def test_clip_grad_norm_without_gradients_returns_zero():
    model = torch.nn.Linear(2, 2)
    assert clip_grad_norm(model.parameters(), max_norm=1.0).item() == 0.0, "no gradients must give norm 0"
