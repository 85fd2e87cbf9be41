"""Run the Triton kernels under Triton's CPU interpreter and print their max differences to the reference (JSON).

``TRITON_INTERPRET=1`` only takes effect when set before triton is first imported, and importing the
whole plugin (mmcv, torch._dynamo) imports triton early; so this runs in its own process (started by
``test_deformable_aggregation_triton.py``) and loads only the ops package, not the plugin's model code.
"""
import json
import os
import sys
import types

os.environ["TRITON_INTERPRET"] = "1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_ops_without_plugin_init() -> None:
    """Make ``projects.mmdet3d_plugin`` a bare package so importing its ``ops`` skips the model registry."""
    sys.path.insert(0, ROOT)
    import projects

    plugin = types.ModuleType("projects.mmdet3d_plugin")
    plugin.__path__ = [os.path.join(ROOT, "projects", "mmdet3d_plugin")]
    sys.modules["projects.mmdet3d_plugin"] = plugin
    projects.mmdet3d_plugin = plugin


def main() -> None:
    _load_ops_without_plugin_init()
    import torch

    from projects.mmdet3d_plugin.ops.deformable_aggregation import reference, triton
    from tests.ops.da_cases import leaf_inputs, make_case

    cases = {
        "borders": make_case(batch=1, num_anchor=2, num_pts=3),
        "odd_groups": make_case(seed=3, batch=2, num_cams=1, channels=9, groups=3, num_anchor=1, num_pts=2),
    }
    report = {}
    for name, case in cases.items():
        spatial_shape, scale_start_index = case["triple"][1:]
        tri, ref = leaf_inputs(case), leaf_inputs(case)
        out = triton.deformable_aggregation(tri[0], spatial_shape, scale_start_index, *tri[1:])
        expected = reference.deformable_aggregation(ref[0], spatial_shape, scale_start_index, *ref[1:])
        grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(5))
        out.backward(grad)
        expected.backward(grad)
        report[name] = {
            "dtype": str(out.dtype),
            "shape_ok": out.shape == expected.shape,
            "forward": (out - expected).abs().max().item(),
            **{f"grad_{n}": (a.grad - b.grad).abs().max().item() for n, a, b in zip(("feats", "loc", "weights"), tri, ref)},
        }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
