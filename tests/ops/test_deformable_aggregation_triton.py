"""Triton backend of ops.deformable_aggregation against the reference, forward and backward.

Without a GPU the kernels run under Triton's CPU interpreter in a separate process (see
``triton_interpreted_check.py``: the interpreter must be switched on before triton is imported). With a
GPU the same comparisons run compiled on CUDA in this process.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from projects.mmdet3d_plugin.ops.deformable_aggregation import reference

from .da_cases import leaf_inputs, make_case

TRITON_MAJOR = int(pytest.importorskip("triton", reason="triton is not installed").__version__.split(".")[0])

TOLERANCE = {"forward": 1e-5, "grad_feats": 1e-4, "grad_loc": 1e-4, "grad_weights": 1e-4}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.skipif(TRITON_MAJOR < 3,
                    reason="triton < 3 (torch 2.1 ships 2.1) cannot interpret kernels on CPU tensors; Triton is the "
                           "CUDA path only, never used on NPU")
def test_interpreted_triton_matches_reference_with_borders_and_outside_points():
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "triton_interpreted_check.py")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"interpreted Triton run failed:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for case, result in report.items():
        assert result["shape_ok"] and result["dtype"] == "torch.float32", f"{case}: wrong output {result}"
        for key, tol in TOLERANCE.items():
            assert result[key] <= tol, f"{case}: {key} differs from the reference by {result[key]:.2e} > {tol}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kwargs", [dict(batch=1, num_anchor=2, num_pts=3), dict(seed=3, channels=9, groups=3)])
def test_compiled_triton_matches_reference_on_cuda(kwargs):
    from projects.mmdet3d_plugin.ops.deformable_aggregation import triton

    case = make_case(**kwargs)
    spatial_shape, scale_start_index = (t.cuda() for t in case["triple"][1:])
    tri = [t.detach().cuda().requires_grad_() for t in leaf_inputs(case)]
    ref = leaf_inputs(case)
    out = triton.deformable_aggregation(tri[0], spatial_shape, scale_start_index, *tri[1:])
    expected = reference.deformable_aggregation(ref[0], *case["triple"][1:], *ref[1:])
    assert torch.allclose(out.cpu(), expected, atol=1e-5), f"forward differs by {(out.cpu() - expected).abs().max():.2e}"
    grad = torch.randn(expected.shape)
    out.backward(grad.cuda())
    expected.backward(grad)
    for name, a, b in zip(("features", "locations", "weights"), tri, ref):
        assert torch.allclose(a.grad.cpu(), b.grad, atol=1e-4), f"grad of {name} differs by {(a.grad.cpu() - b.grad).abs().max():.2e}"
