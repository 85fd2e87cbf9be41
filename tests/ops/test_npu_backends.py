"""NPU code paths of ops/ through the checked fakes of torch_npu and mx_driving (tests/fakes)."""
import pytest
import torch

from projects.mmdet3d_plugin import device, ops
from projects.mmdet3d_plugin.ops import dispatch
from projects.mmdet3d_plugin.ops.deformable_aggregation import reference
from tests.fakes import fake_npu  # noqa: F401  (pytest fixture)

from .da_cases import leaf_inputs, make_case


def test_fakes_make_the_device_layer_say_npu_on_cpu_tensors(fake_npu):
    assert device.get_backend() == "npu" and device.is_npu(), "device layer must report npu under the fakes"
    assert device.get_device() == torch.device("cpu"), "tensors must stay on the CPU"
    assert device.get_dist_backend() == "hccl", "npu backend must use hccl"
    for op in ("deformable_aggregation", "flash_attention"):
        assert dispatch.backend_name(op, torch.device("cpu")) == "npu", f"{op} must pick its NPU backend"


def test_deformable_aggregation_npu_path_equals_reference_and_passes_documented_layout(fake_npu):
    case = make_case(channels=64, groups=8)
    npu_inputs, ref_inputs = leaf_inputs(case), leaf_inputs(case)
    _, spatial_shape, scale_start_index = case["triple"]
    out = ops.deformable_aggregation(npu_inputs[0], spatial_shape, scale_start_index, *npu_inputs[1:])
    ref = reference.deformable_aggregation(ref_inputs[0], spatial_shape, scale_start_index, *ref_inputs[1:])
    assert len(fake_npu.mx_driving.CALLS) == 1, "mx_driving.deformable_aggregation was not called exactly once"
    args = fake_npu.mx_driving.CALLS[0][1]
    for name in ("spatial_shape", "scale_start_index"):
        assert args[name].dtype == torch.int32, f"{name} must be passed as int32"
    for name, tensor in args.items():
        assert tensor.is_contiguous(), f"{name} must be passed contiguous"
    assert torch.allclose(out, ref, atol=1e-6), "NPU path differs from the reference"
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    for name, a, b in zip(("features", "locations", "weights"), npu_inputs, ref_inputs):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), f"grad of {name} differs through the NPU path"


def test_deformable_aggregation_npu_path_falls_back_outside_kernel_limits(fake_npu):
    case = make_case(channels=8, groups=2)  # the kernel needs exactly 8 groups
    out = ops.deformable_aggregation(*case["triple"], case["location"], case["weights"])
    ref = reference.deformable_aggregation(*case["triple"], case["location"], case["weights"])
    assert not fake_npu.mx_driving.CALLS, "the kernel must not be called with 2 groups"
    assert torch.allclose(out, ref), "fallback differs from the reference"


def test_fake_kernel_rejects_undocumented_inputs(fake_npu):
    case = make_case(channels=64, groups=8)
    feats, spatial_shape, scale_start_index = case["triple"]
    with pytest.raises(ValueError, match="float32"):
        fake_npu.mx_driving.deformable_aggregation(
            feats.double(), spatial_shape, scale_start_index, case["location"], case["weights"]
        )
    with pytest.raises(ValueError, match="packed offsets"):
        fake_npu.mx_driving.deformable_aggregation(
            feats, spatial_shape, scale_start_index.flip(0), case["location"], case["weights"]
        )


@pytest.mark.parametrize("training, keep_prob", [(False, 1.0), (True, 0.9)])
def test_flash_attention_npu_path_uses_bsnd_fp16_and_matches_sdpa(fake_npu, training, keep_prob):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 32, generator=gen) for n in (5, 7, 7))
    torch.manual_seed(0)
    out = ops.flash_attention(q, k, v, num_heads=4, dropout_p=0.1, training=training)
    (name, args), = fake_npu.torch_npu.CALLS
    assert args["input_layout"] == "BSND" and args["query"].shape == (2, 5, 4, 8), "q must be [B, S, N, D]"
    assert args["query"].dtype == torch.float16, "the kernel must get fp16 inputs"
    assert args["keep_prob"] == pytest.approx(keep_prob), f"keep_prob {args['keep_prob']} != {keep_prob}"
    assert args["scale"] == pytest.approx(8 ** -0.5), "scale must default to D ** -0.5"
    assert args["pre_tockens"] == args["next_tockens"] == 65536, "token windows must be 65536 (dense)"
    assert out.dtype == torch.float32 and out.shape == (2, 5, 32), f"output {out.dtype} {tuple(out.shape)}"
    if not training:
        sdpa = torch.nn.functional.scaled_dot_product_attention(
            *(t.view(2, -1, 4, 8).transpose(1, 2) for t in (q, k, v))
        ).transpose(1, 2).flatten(2)
        assert torch.allclose(out, sdpa, atol=5e-3), f"NPU path differs from SDPA by {(out - sdpa).abs().max():.1e}"


def test_optimizer_and_clip_use_npu_fused_versions(fake_npu):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer = ops.build_adamw(model.parameters(), lr=1e-3, weight_decay=1e-3)
    assert type(optimizer).__name__ == "NpuFusedAdamW", f"npu optimizer is {type(optimizer).__name__}"
    expected = torch.stack([p.grad.norm() for p in model.parameters()]).norm()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = ops.clip_grad_norm(params, max_norm=0.1, optimizer=optimizer)
    assert ("clip_grad_norm_fused_", {"max_norm": 0.1, "norm_type": 2.0}) in fake_npu.torch_npu.CALLS, (
        "clipping must go through the fused optimizer"
    )
    assert torch.allclose(norm, expected), f"norm {norm} != {expected}"
    optimizer.step()


def test_apply_npu_patches_enables_the_builtin_patches_once(fake_npu):
    assert ops.apply_npu_patches() is True, "apply_npu_patches must report success on npu"
    applied = {name for _, name in fake_npu.mx_driving.APPLIED}
    assert {"index", "batch_matmul", "numpy_type"} <= applied, f"patches applied: {sorted(applied)}"
    count = len(fake_npu.mx_driving.APPLIED)
    assert ops.apply_npu_patches() is True and len(fake_npu.mx_driving.APPLIED) == count, "patches applied twice"


def test_apply_npu_patches_is_a_no_op_off_npu(monkeypatch):
    monkeypatch.setenv(device.ENV_VAR, "cpu")
    device.reset_backend_cache()
    assert ops.apply_npu_patches() is False, "apply_npu_patches must do nothing on cpu"
