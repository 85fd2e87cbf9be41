"""Time deformable aggregation (forward + backward) on every available backend at SparseDrive-small shapes.

Compares each backend of ``ops.deformable_aggregation`` with the reference and with upstream's per-camera
``grid_sample`` formulation, for the det head (A=900, P=13) and the map head (A=100, P=300), 6 cameras,
4 levels of a 256 x 704 image, C=256, G=8. Sampling locations are realistic: each keypoint gets a random
azimuth and lands in the one or two cameras (70 degree field of view, 60 degrees apart) that see it;
the other cameras get it far outside the image, as points behind a camera do upstream.

    OMP_NUM_THREADS=1 python tools/benchmarks/benchmark_deformable_aggregation.py --device cpu
"""
import argparse
import logging
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from projects.mmdet3d_plugin.device import get_device  # noqa: E402
from projects.mmdet3d_plugin.ops import dispatch, feature_maps_format, grid_sample_aggregation  # noqa: E402
from projects.mmdet3d_plugin.ops.deformable_aggregation import OP  # noqa: E402

logger = logging.getLogger("benchmark_deformable_aggregation")

LEVEL_SHAPES = ((64, 176), (32, 88), (16, 44), (8, 22))
CONFIGS = {"det": dict(num_anchor=900, num_pts=13), "map": dict(num_anchor=100, num_pts=300)}
NUM_CAMS, CHANNELS, GROUPS = 6, 256, 8
HALF_FOV_TAN = math.tan(math.radians(35.0))


def make_inputs(num_anchor: int, num_pts: int, device: torch.device, seed: int = 0) -> Dict[str, object]:
    """Feature maps (list and flattened triple), locations [1, A, P, 6, 2] and weights [1, A, P, 6, 4, 8]."""
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randn(1, NUM_CAMS, CHANNELS, h, w, generator=gen) for h, w in LEVEL_SHAPES]
    azimuth = torch.rand(1, num_anchor, num_pts, 1, generator=gen) * 2 * math.pi
    centres = torch.arange(NUM_CAMS) * (2 * math.pi / NUM_CAMS)
    delta = torch.remainder(azimuth - centres + math.pi, 2 * math.pi) - math.pi  # [1, A, P, N]
    in_front = delta.abs() < math.pi / 2
    u = torch.where(in_front, 0.5 + torch.tan(delta) / (2 * HALF_FOV_TAN), torch.full_like(delta, -1e4))
    v = torch.where(in_front, 0.3 + 0.5 * torch.rand(delta.shape, generator=gen), torch.full_like(delta, -1e4))
    location = torch.stack([u, v], dim=-1)
    weights = torch.rand(1, num_anchor, num_pts, NUM_CAMS, len(LEVEL_SHAPES), GROUPS, generator=gen)
    weights = weights / weights.sum(dim=(2, 3, 4), keepdim=True)
    maps = [m.to(device) for m in maps]
    return dict(
        maps=maps,
        triple=feature_maps_format(maps),
        location=location.to(device),
        weights=weights.to(device),
        cameras_per_point=((location > 0) & (location < 1)).all(-1).sum(-1).float().mean().item(),
    )


def runner(backend: str, inputs: Dict[str, object]) -> Callable[[bool], None]:
    """A closure running one forward (and backward when asked) of ``backend``."""
    location = inputs["location"].clone().requires_grad_()
    weights = inputs["weights"].clone().requires_grad_()
    if backend == "grid_sample":
        maps = [m.clone().requires_grad_() for m in inputs["maps"]]

        def forward():
            return grid_sample_aggregation(maps, location, weights)

    else:
        feats, spatial_shape, scale_start_index = inputs["triple"]
        feats = feats.clone().requires_grad_()
        impl = dispatch.implementation(OP, backend)

        def forward():
            return impl(feats, spatial_shape, scale_start_index, location, weights)

    def run(with_backward: bool) -> None:
        out = forward()
        if with_backward:
            out.sum().backward()

    return run


def time_backends(
    runs: Dict[str, Callable[[bool], None]], device: torch.device, warmup: int, repeats: int
) -> Dict[str, Tuple[float, float]]:
    """Median (forward, forward + backward) milliseconds per backend.

    Backends take turns within every repeat, so load changes on a shared machine hit all of them alike.
    """
    sync = (lambda: None) if device.type == "cpu" else getattr(torch, device.type).synchronize
    for run in runs.values():
        for _ in range(warmup):
            run(True)
    times: Dict[Tuple[str, bool], List[float]] = {(name, bwd): [] for name in runs for bwd in (False, True)}
    for _ in range(repeats):
        for name, run in runs.items():
            for with_backward in (False, True):
                sync()
                start = time.perf_counter()
                run(with_backward)
                sync()
                times[(name, with_backward)].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(times[(name, False)]), statistics.median(times[(name, True)])) for name in runs}


def backends_for(device: torch.device) -> List[str]:
    names = ["grid_sample", "reference"]
    if device.type == "cpu":
        names.append("cpu")
    if device.type == "cuda":
        names.append("triton")
    if device.type == "npu":
        names.append("npu")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="torch device (default: the device layer's choice)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else get_device()

    header = f"{'config':<6} {'backend':<12} {'fwd ms':>9} {'fwd+bwd ms':>11} {'x vs grid_sample':>17} {'x vs reference':>15}"
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logger.info("device %s, torch %s, threads %d", device, torch.__version__, torch.get_num_threads())
    logger.info(header)
    for name in args.configs:
        inputs = make_inputs(device=device, **CONFIGS[name])
        runs = {backend: runner(backend, inputs) for backend in backends_for(device)}
        results = time_backends(runs, device, args.warmup, args.repeats)
        base_gs, base_ref = results["grid_sample"][1], results["reference"][1]
        for backend, (fwd, total) in results.items():
            logger.info(
                f"{name:<6} {backend:<12} {fwd:9.1f} {total:11.1f} {base_gs / total:17.2f} {base_ref / total:15.2f}"
            )
        logger.info(
            f"{name:<6} (A={CONFIGS[name]['num_anchor']}, P={CONFIGS[name]['num_pts']}, "
            f"{inputs['cameras_per_point']:.2f} cameras per point)"
        )


if __name__ == "__main__":
    main()
