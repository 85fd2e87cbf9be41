"""The accelerator backends of ops/ on the real device, without fakes, against the CPU reference.

CUDA: Triton deformable aggregation, SDPA, fused AdamW, foreach clipping. NPU: mx_driving's kernel,
``npu_fusion_attention``, ``NpuFusedAdamW``, ``clip_grad_norm_fused_`` (the calls that ``tests/fakes``
checks on CPU). Plus one training step of the reduced model on the device against the same step on the
CPU, which catches tensors left on the wrong device anywhere in the model. Skipped where the backend is
``cpu``; ``tools/device_check.sh`` runs this module on a GPU or NPU machine.
"""
import copy

import pytest
import torch

from projects.mmdet3d_plugin import device, ops
from projects.mmdet3d_plugin.ops import dispatch
from projects.mmdet3d_plugin.ops.deformable_aggregation import OP, reference

from .da_cases import leaf_inputs, make_case


def _accelerator() -> str:
    try:
        return device.get_backend()
    except (ValueError, RuntimeError, ImportError):
        return "cpu"


BACKEND = _accelerator()
pytestmark = pytest.mark.skipif(BACKEND == "cpu", reason="needs a CUDA or NPU device (tools/device_check.sh)")
KERNELS = {"cuda": "triton", "npu": "npu"}
# the NPU attention kernel computes in fp16; CUDA convolutions may use TF32
ATTENTION_ATOL = {"cuda": 1e-4, "npu": 5e-3}
LOSS_RTOL = 1e-2


def _device() -> torch.device:
    return device.get_device()


def test_deformable_aggregation_kernel_matches_reference_forward_and_backward():
    dev = _device()
    assert dispatch.backend_name(OP, dev) == KERNELS[BACKEND], f"{BACKEND} must run its own aggregation kernel"
    case = make_case(channels=64, groups=8, num_anchor=5, num_pts=7)  # 8 groups: inside the NPU kernel's limits
    _, spatial_shape, scale_start_index = case["triple"]
    on_device = [t.detach().to(dev).requires_grad_() for t in leaf_inputs(case)]
    ref = leaf_inputs(case)
    out = ops.deformable_aggregation(on_device[0], spatial_shape.to(dev), scale_start_index.to(dev), *on_device[1:])
    expected = reference.deformable_aggregation(ref[0], spatial_shape, scale_start_index, *ref[1:])
    assert out.device.type == dev.type and out.dtype == torch.float32, f"output on {out.device}, {out.dtype}"
    error = (out.cpu() - expected).abs().max()
    assert torch.allclose(out.cpu(), expected, atol=1e-5), f"forward differs by {error:.2e}"
    grad = torch.randn(expected.shape)
    out.backward(grad.to(dev))
    expected.backward(grad)
    for name, a, b in zip(("features", "locations", "weights"), on_device, ref):
        error = (a.grad.cpu() - b.grad).abs().max()
        assert torch.allclose(a.grad.cpu(), b.grad, atol=1e-4), f"grad of {name} differs by {error:.2e}"


def test_attention_matches_reference():
    gen = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 300, 256, generator=gen) for _ in range(3))
    dev = _device()
    out = ops.flash_attention(query.to(dev), key.to(dev), value.to(dev), num_heads=8)
    dispatch.set_backend("flash_attention", "reference")
    try:
        expected = ops.flash_attention(query, key, value, num_heads=8)
    finally:
        dispatch.set_backend("flash_attention", None)
    error = (out.float().cpu() - expected).abs().max().item()
    assert out.shape == expected.shape and error <= ATTENTION_ATOL[BACKEND], f"attention differs by {error:.2e}"


def test_fused_adamw_and_clip_match_torch_on_cpu():
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(64, 32, generator=gen), torch.randn(32, generator=gen)]
    grads = [[torch.randn(w.shape, generator=gen) for w in weights] for _ in range(3)]
    dev = _device()
    cpu_params = [torch.nn.Parameter(w.clone()) for w in weights]
    dev_params = [torch.nn.Parameter(w.clone().to(dev)) for w in weights]
    cpu_opt = torch.optim.AdamW(cpu_params, lr=1e-2, weight_decay=0.01)
    dev_opt = ops.build_adamw(dev_params, lr=1e-2, weight_decay=0.01)
    for step_grads in grads:
        for cpu_p, dev_p, g in zip(cpu_params, dev_params, step_grads):
            cpu_p.grad, dev_p.grad = g.clone(), g.clone().to(dev)
        cpu_norm = torch.nn.utils.clip_grad_norm_(cpu_params, max_norm=5.0)
        dev_norm = ops.clip_grad_norm(dev_params, max_norm=5.0, optimizer=dev_opt)
        assert abs(float(dev_norm) - float(cpu_norm)) <= 1e-4 * float(cpu_norm), (
            f"clip: norm {float(dev_norm)} on the device vs {float(cpu_norm)} on the CPU"
        )
        cpu_opt.step()
        dev_opt.step()
    for cpu_p, dev_p in zip(cpu_params, dev_params):
        assert torch.allclose(dev_p.detach().cpu(), cpu_p.detach(), atol=1e-5), "AdamW on the device drifts from torch"


@pytest.mark.slow
def test_reduced_model_training_step_on_device_matches_cpu():
    from tests.models.batch_factory import build_model, load_config, make_batch

    from projects.mmdet3d_plugin.models.attention import FlashMHA
    from projects.mmdet3d_plugin.models.blocks import DeformableFeatureAggregation

    model = build_model(load_config(), seed=0)
    model.use_grid_mask = False  # random draws differ between devices: switch every one off
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        elif isinstance(module, FlashMHA):
            module.dropout_p = 0.0
        elif isinstance(module, DeformableFeatureAggregation):
            module.attn_drop = 0.0
    dev_model = copy.deepcopy(model).to(_device())
    data = make_batch(batch_size=1, seed=0)
    dev_data = {k: _to(v, _device()) for k, v in data.items()}
    results = {}
    for name, net, batch in (("cpu", model, data), (BACKEND, dev_model, dev_data)):
        net.train()
        losses = net(**batch)
        sum(losses.values()).backward()
        norm = torch.norm(torch.stack([p.grad.float().norm() for p in net.parameters() if p.grad is not None]))
        results[name] = ({k: float(v) for k, v in losses.items()}, float(norm))
    (cpu_losses, cpu_norm), (dev_losses, dev_norm) = results["cpu"], results[BACKEND]
    for key, value in cpu_losses.items():
        assert abs(dev_losses[key] - value) <= 1e-4 + LOSS_RTOL * abs(value), (
            f"{key}: {dev_losses[key]} on {BACKEND} vs {value} on the CPU"
        )
    assert abs(dev_norm - cpu_norm) <= 5 * LOSS_RTOL * cpu_norm, f"gradient norm {dev_norm} vs cpu {cpu_norm}"


def _to(obj, dev: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(dev)
    if isinstance(obj, list):
        return [_to(x, dev) for x in obj]
    return obj
