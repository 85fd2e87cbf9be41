"""Inference speed of a SparseDrive model over the test split: ``python tools/benchmark.py CONFIG [CHECKPOINT]``.

Measured as upstream's ``tools/benchmark.py`` does (the way the paper's FPS was measured): batch 1, the
test split in order (temporal state carries over), the first ``--warmup`` frames excluded, the config's
``fp16`` applied where the backend runs it (CUDA, NPU: mmcv's ``wrap_fp16_model``), optionally with
conv + BatchNorm fused. Two figures:

* ``fps``: frames per second as a user sees them, data loading included (wall time from one frame's
  result to the next one's);
* ``model_fps``: the model call alone (host-to-device copy included, loading excluded), which is the
  figure upstream's script prints.

``cpu_s_per_frame`` (this process's CPU time per frame) tells a busy shared CPU apart from slow code:
wall time far above CPU time / threads means the process waited for cores.

Plus the parameter count and the peak memory (device memory on an accelerator, process RSS on CPU).
The same code runs on npu / cuda / cpu (``SPARSEDRIVE_DEVICE`` picks one). Without a checkpoint the
weights are random, which times the same computation.
"""
import argparse
import json
import os.path as osp
import resource
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.cli_utils import die, load_config, quiet_startup_noise, run_main, setup_backend  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Inference FPS of a SparseDrive model over the test split")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", nargs="?", default=None, help="checkpoint file (default: random weights)")
    parser.add_argument("--checkpoint", dest="checkpoint_opt", default=None, help="upstream's spelling of CHECKPOINT")
    parser.add_argument("--samples", type=int, default=1000, help="frames to run, warm-up included (at most the split)")
    parser.add_argument("--warmup", type=int, default=5, help="first frames left out of the figures")
    parser.add_argument("--fuse-conv-bn", action="store_true", help="fold BatchNorm into the convolutions")
    parser.add_argument("--no-fp16", action="store_true", help="run fp32 even where the config's fp16 applies")
    parser.add_argument("--seed", type=int, default=0, help="random seed (random weights without a checkpoint)")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE", help="override config settings")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    args.checkpoint = args.checkpoint or args.checkpoint_opt
    if args.warmup < 0 or args.samples <= args.warmup:
        parser.error(f"--samples ({args.samples}) must exceed --warmup ({args.warmup}) >= 0")
    return args


def peak_memory_gib() -> Dict[str, float]:
    """Peak device memory on an accelerator, else the process's peak RSS (Linux reports KiB)."""
    from projects.mmdet3d_plugin import device

    if device.get_backend() == "cpu":
        return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    return {"peak_device_gib": round(device.max_memory_allocated() / 2**30, 3)}


def measure(model, data_loader, samples: int, warmup: int) -> Dict[str, float]:
    """Run ``model`` over up to ``samples`` batches; figures over the batches after the first ``warmup``."""
    import mmcv
    import torch

    from projects.mmdet3d_plugin import device

    total = min(samples, len(data_loader))
    if total <= warmup:
        die(f"the test split has {len(data_loader)} frames; --warmup {warmup} leaves none to time.")
    progress = mmcv.ProgressBar(total)
    frame_time = model_time = cpu_time = 0.0
    previous, previous_cpu = time.perf_counter(), time.process_time()
    for index, data in enumerate(data_loader):
        loaded = time.perf_counter()
        with torch.no_grad():
            model(return_loss=False, rescale=True, **data)
        device.synchronize()
        done, done_cpu = time.perf_counter(), time.process_time()
        if index >= warmup:
            frame_time += done - previous
            model_time += done - loaded
            cpu_time += done_cpu - previous_cpu
        previous, previous_cpu = done, done_cpu
        progress.update()
        if index + 1 == total:
            break
    timed = total - warmup
    sys.stdout.write("\n")
    return {
        "frames": timed,
        "warmup": warmup,
        "fps": round(timed / frame_time, 4),
        "model_fps": round(timed / model_time, 4),
        "s_per_frame": round(frame_time / timed, 4),
        "model_s_per_frame": round(model_time / timed, 4),
        "cpu_s_per_frame": round(cpu_time / timed, 4),
    }


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    quiet_startup_noise()
    cfg = load_config(args.config, args.cfg_options)
    backend = setup_backend()

    import torch
    from mmcv.runner import set_random_seed, wrap_fp16_model
    from mmdet.models import build_detector

    from projects.mmdet3d_plugin import device
    from projects.mmdet3d_plugin.apis.parallel import wrap_model
    from projects.mmdet3d_plugin.datasets import build_dataloader
    from projects.mmdet3d_plugin.datasets.builder import build_dataset
    from tools.fuse_conv_bn import fuse, load_for_inference

    set_random_seed(args.seed)
    if cfg.get("cudnn_benchmark", False):
        torch.backends.cudnn.benchmark = True
    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test)
    data_loader = build_dataloader(
        dataset, samples_per_gpu=1, workers_per_gpu=cfg.data.workers_per_gpu, num_gpus=1, dist=False,
        shuffle=False, nonshuffler_sampler=cfg.data.get("nonshuffler_sampler"),
    )
    model = build_detector(cfg.model, test_cfg=cfg.get("test_cfg"))
    fp16 = bool(cfg.get("fp16")) and not args.no_fp16 and device.supports_fp16()
    if fp16:
        wrap_fp16_model(model)
    if args.checkpoint:
        if not osp.isfile(args.checkpoint):
            die(f"checkpoint {args.checkpoint} does not exist; train first or leave it out for random weights.")
        load_for_inference(model, args.checkpoint, fuse_conv_bn=args.fuse_conv_bn)
    elif args.fuse_conv_bn:
        fuse(model)
    params = sum(p.numel() for p in model.parameters())
    model = wrap_model(model, distributed=False)
    model.eval()

    report: Dict[str, object] = {
        "config": args.config,
        "checkpoint": args.checkpoint,
        "backend": backend,
        "device": str(device.get_device()),
        "threads": torch.get_num_threads(),
        "precision": "fp16" if fp16 else "fp32",
        "fuse_conv_bn": args.fuse_conv_bn,
        "batch_size": 1,
        "params": params,
    }
    report.update(measure(model, data_loader, args.samples, args.warmup))
    report.update(peak_memory_gib())
    memory = ", ".join(f"{key} {value}" for key, value in report.items() if key.startswith("peak_"))
    print(f"{report['frames']} frames timed ({args.warmup} warm-up left out), batch 1, {report['device']}, "
          f"{report['precision']}, conv-bn fused: {'yes' if args.fuse_conv_bn else 'no'}")
    print(f"fps (data loading included): {report['fps']:.3f} img / s ({report['s_per_frame']:.3f} s per frame, "
          f"{report['cpu_s_per_frame']:.3f} s of this process's CPU time)")
    print(f"model fps (model call only, upstream's figure): {report['model_fps']:.3f} img / s")
    print(f"parameters: {params / 1e6:.2f} M; {memory}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    run_main(main)
