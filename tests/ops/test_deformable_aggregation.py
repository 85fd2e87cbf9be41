"""ops.deformable_aggregation: reference semantics, the fast CPU path, dispatch and input checks."""
import pytest
import torch

from projects.mmdet3d_plugin import ops
from projects.mmdet3d_plugin.ops import dispatch
from projects.mmdet3d_plugin.ops.deformable_aggregation import cpu, reference

from .da_cases import leaf_inputs, make_case

OP = "deformable_aggregation"


@pytest.fixture(autouse=True)
def _automatic_backends():
    dispatch.reset()
    yield
    dispatch.reset()


def _single_pixel_grid_case(u: float, v: float, weight: float = 1.0):
    """One camera, one 2x2 level with channel 0 = [[1, 2], [3, 4]] and channel 1 = 10x; one sample."""
    level = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    maps = [torch.stack([level, 10 * level])[None, None]]  # [1, 1, 2, 2, 2]
    feats, spatial_shape, scale_start_index = ops.feature_maps_format(maps)
    location = torch.tensor([u, v]).view(1, 1, 1, 1, 2)
    weights = torch.full((1, 1, 1, 1, 1, 1), weight)
    return reference.deformable_aggregation(feats, spatial_shape, scale_start_index, location, weights)[0, 0]


@pytest.mark.parametrize(
    "u, v, weight, expected",
    [
        (0.25, 0.25, 1.0, 1.0),  # centre of pixel (0, 0)
        (0.5, 0.5, 1.0, 2.5),  # midway between the four pixels
        (0.75, 0.25, 2.0, 4.0),  # centre of pixel (1, 0), weight 2
        (0.1, 0.25, 1.0, 0.7),  # x = -0.3: left neighbour is zero padding
        (0.0, 0.5, 1.0, 0.0),  # u exactly 0: skipped
        (0.5, 1.0, 1.0, 0.0),  # v exactly 1: skipped
        (1.2, 0.5, 1.0, 0.0),  # outside the image
    ],
)
def test_reference_bilinear_values_by_hand(u, v, weight, expected):
    out = _single_pixel_grid_case(u, v, weight)
    assert torch.allclose(out, torch.tensor([expected, 10 * expected]), atol=1e-6), (
        f"(u, v) = ({u}, {v}) sampled {out.tolist()}, expected {[expected, 10 * expected]}"
    )


def test_reference_weights_apply_per_channel_group():
    case = make_case(channels=8, groups=2, with_borders=False)
    feats, spatial_shape, scale_start_index = case["triple"]
    weights = case["weights"].clone()
    weights[..., 1] = 0  # group 1 (channels 4..7) gets no weight
    out = reference.deformable_aggregation(feats, spatial_shape, scale_start_index, case["location"], weights)
    assert out.shape == (2, 3, 8), f"output shape {tuple(out.shape)} != (B, A, C) = (2, 3, 8)"
    assert torch.all(out[..., 4:] == 0), "channels of a zero-weight group must be zero"
    assert out[..., :4].abs().sum() > 0, "channels of the weighted group must not be zero"


def test_reference_equals_per_camera_grid_sample_for_samples_inside():
    case = make_case(with_borders=False)
    location = case["location"]
    inside = ((location > 0) & (location < 1)).all(dim=-1, keepdim=True)
    # grid_sample still touches border pixels just outside the image: move skipped samples far away
    location = torch.where(inside, location, torch.full_like(location, -5.0))
    feats, spatial_shape, scale_start_index = case["triple"]
    ref = reference.deformable_aggregation(feats, spatial_shape, scale_start_index, location, case["weights"])
    grid = ops.grid_sample_aggregation(case["maps"], location, case["weights"])
    assert torch.allclose(ref, grid, atol=1e-5), f"max difference {(ref - grid).abs().max():.2e}"


@pytest.mark.parametrize("backend", [reference, cpu], ids=["reference", "cpu"])
def test_gradcheck_float64(backend):
    case = make_case(batch=1, num_anchor=2, num_pts=3, channels=4, dtype=torch.float64, with_borders=False)
    _, spatial_shape, scale_start_index = case["triple"]

    def fn(feats, location, weights):
        return backend.deformable_aggregation(feats, spatial_shape, scale_start_index, location, weights)

    inputs = tuple(leaf_inputs(case))
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True), (
        f"{backend.__name__} gradients differ from finite differences"
    )


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_cpu_fast_path_matches_reference_forward_and_backward(dtype, tol):
    case = make_case(seed=1, dtype=dtype)
    _, spatial_shape, scale_start_index = case["triple"]
    fast_inputs, ref_inputs = leaf_inputs(case), leaf_inputs(case)
    fast = cpu.deformable_aggregation(fast_inputs[0], spatial_shape, scale_start_index, *fast_inputs[1:])
    ref = reference.deformable_aggregation(ref_inputs[0], spatial_shape, scale_start_index, *ref_inputs[1:])
    assert fast.dtype == ref.dtype == dtype, f"dtypes {fast.dtype} / {ref.dtype}, expected {dtype}"
    assert torch.allclose(fast, ref, atol=tol), f"forward differs by {(fast - ref).abs().max():.2e}"
    grad = torch.randn_like(ref)
    fast.backward(grad)
    ref.backward(grad)
    for name, a, b in zip(("features", "locations", "weights"), fast_inputs, ref_inputs):
        diff = (a.grad - b.grad).abs().max()
        assert torch.allclose(a.grad, b.grad, atol=tol * 10), f"grad of {name} differs by {diff:.2e}"


def test_cpu_fast_path_reads_strided_weights_in_place_and_returns_their_layout():
    """The model hands over the softmax output as a [B, A, P, N, L, G] view of a [B, A, G, N, L, P] buffer."""
    case = make_case(seed=3, num_anchor=5, num_pts=3)
    _, spatial_shape, scale_start_index = case["triple"]
    feats, location, weights = leaf_inputs(case)
    buffer = weights.detach().permute(0, 1, 5, 3, 4, 2).contiguous().requires_grad_()  # [B, A, G, N, L, P]
    strided = buffer.permute(0, 1, 5, 3, 4, 2)
    assert not strided.is_contiguous() and torch.equal(strided, weights)
    out = cpu.deformable_aggregation(feats, spatial_shape, scale_start_index, location, weights)
    out_strided = cpu.deformable_aggregation(feats.detach(), spatial_shape, scale_start_index, location.detach(), strided)
    assert torch.equal(out, out_strided), f"strided weights changed the output by {(out - out_strided).abs().max():.2e}"
    grad = torch.randn_like(out)
    out.backward(grad)
    out_strided.backward(grad)
    grad_strided = buffer.grad.permute(0, 1, 5, 3, 4, 2)
    assert torch.equal(grad_strided, weights.grad), "grad of strided weights differs"
    assert weights.grad[weights.grad != 0].numel() > 0, "the case must give some non-zero weight gradients"


def test_cpu_fast_path_with_no_sample_inside_gives_zeros():
    case = make_case()
    feats, location, weights = leaf_inputs(case)
    with torch.no_grad():
        location.fill_(-1.0)
    out = cpu.deformable_aggregation(feats, case["triple"][1], case["triple"][2], location, weights)
    out.sum().backward()
    assert torch.all(out == 0), "no sample inside an image must give zero output"
    for name, tensor in (("features", feats), ("locations", location), ("weights", weights)):
        assert torch.all(tensor.grad == 0), f"grad of {name} must be zero when every sample is skipped"


def test_cpu_fast_path_chunks_agree_with_one_chunk(monkeypatch):
    case = make_case(seed=2, num_anchor=6, num_pts=5)
    args = (case["triple"][0], case["triple"][1], case["triple"][2], case["location"], case["weights"])
    whole = cpu.deformable_aggregation(*args)
    monkeypatch.setattr(cpu, "CHUNK", 3)
    chunked = cpu.deformable_aggregation(*args)
    assert torch.allclose(whole, chunked, atol=1e-6), "chunked gathering changed the result"


def test_public_function_uses_cpu_fast_path_for_cpu_tensors():
    assert dispatch.backend_name(OP, torch.device("cpu")) == "cpu", "cpu tensors must default to the fast CPU path"
    assert dispatch.backend_name(OP, torch.device("cuda")) == "triton", "cuda tensors must default to Triton"
    case = make_case()
    out = ops.deformable_aggregation(*case["triple"], case["location"], case["weights"])
    ref = reference.deformable_aggregation(*case["triple"], case["location"], case["weights"])
    assert torch.allclose(out, ref, atol=1e-5), "public function differs from the reference"


def test_backend_override_by_env_and_by_function(monkeypatch):
    monkeypatch.setenv("SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATION", "reference")
    assert dispatch.backend_name(OP, torch.device("cpu")) == "reference", "env override ignored"
    ops.set_backend(OP, "cpu")
    assert dispatch.backend_name(OP, torch.device("cuda")) == "cpu", "set_backend must win over env and device"
    with pytest.raises(ValueError, match="no backend"):
        ops.set_backend(OP, "tpu")
    ops.set_backend(OP, None)
    monkeypatch.setenv("SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATION", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        dispatch.backend_name(OP, torch.device("cpu"))


def test_missing_accelerator_package_fails_with_one_clear_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mx_driving", None)  # makes ``import mx_driving`` raise ImportError
    from projects.mmdet3d_plugin.ops.deformable_aggregation import npu

    monkeypatch.setattr(npu, "_KERNEL", None)
    ops.set_backend(OP, "npu")
    case = make_case(channels=64, groups=8)
    with pytest.raises(RuntimeError, match="mx_driving not importable") as info:
        ops.deformable_aggregation(*case["triple"], case["location"], case["weights"])
    assert "\n" not in str(info.value), "the error must be one line"


@pytest.mark.parametrize(
    "field, bad",
    [
        ("location", torch.zeros(2, 3, 4, 2, 3)),
        ("weights", torch.zeros(2, 3, 4, 2, 2)),
        ("feats", torch.zeros(2, 10, 7)),
    ],
)
def test_wrong_shapes_raise_value_error_naming_the_argument(field, bad):
    case = make_case()
    feats, spatial_shape, scale_start_index = case["triple"]
    args = dict(feats=feats, location=case["location"], weights=case["weights"])
    args[field] = bad
    with pytest.raises(ValueError, match="deformable_aggregation"):
        ops.deformable_aggregation(args["feats"], spatial_shape, scale_start_index, args["location"], args["weights"])
