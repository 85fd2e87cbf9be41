"""Time and memory of one training step and one inference frame of a SparseDrive config, against a floor.

Builds the model from ``--config`` (random grid anchors when data/kmeans is missing, no ImageNet
checkpoint when ckpt/ is missing), feeds a synthetic batch at the config's full input size
(default 6 x 256 x 704, batch 1) and reports, per phase, wall time split into backbone (grid mask +
ResNet + FPN + depth branch + flattening), heads, losses, backward and optimiser (the training
code's ``apis.optimizer.build_optimizer`` and clip: fused kernels where the backend has them), plus
the process peak RSS and the device's peak allocated memory.

The floor is the config's image backbone and neck alone (mmdet ResNet-50 + FPN, as mmdet builds them:
no activation checkpointing, default memory format) on the same images: forward without gradients for
inference, forward + backward in training mode for a step. Floor and model alternate in the same run,
``--repeats`` times after one warm-up each (frame 0 has an empty temporal cache, step 0 allocates the
optimiser state), and the reported figures and ``infer_ratio`` / ``train_ratio`` are medians, so load
from other processes hits both sides alike.

    python tools/benchmarks/benchmark_model_step.py --config projects/configs/sparsedrive_small_stage1.py

Each section also reports process CPU time: on a shared CPU, wall time far above CPU time / threads
means the process waited for cores. There ``--threads 1`` is usually faster than two OpenMP threads
that spin-wait for each other. The synthetic batch comes from ``tests/models/batch_factory.py``.
"""
import argparse
import json
import logging
import os
import resource
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from typing import Dict, Iterator, List

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

logger = logging.getLogger("benchmark_model_step")


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(ROOT, "projects/configs/sparsedrive_small_stage1.py"))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-hw", type=int, nargs=2, default=None, help="H W (default: config input_shape)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed frames / steps (and floor runs) after one warm-up each; medians are reported")
    parser.add_argument("--skip-floor", action="store_true", help="do not measure the backbone + neck floor")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-infer", action="store_true")
    parser.add_argument("--fp16", action="store_true", help="autocast fp16 (accelerators only)")
    parser.add_argument("--profile", type=int, default=0, help="print the N most expensive ops of a training step")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _missing(anchor) -> bool:
    """A configured anchor file that does not exist (inline arrays count as present)."""
    return isinstance(anchor, str) and not os.path.exists(anchor)


def prepare_config(path: str):
    """Load the config and replace inputs that may be absent here (k-means anchors, ImageNet weights)."""
    from mmcv import Config

    from tests.models.batch_factory import det_anchors, map_anchors

    cfg = Config.fromfile(path)
    head = cfg.model.head
    rng = np.random.default_rng(0)
    if head.get("det_head") and _missing(head.det_head.instance_bank.anchor):
        head.det_head.instance_bank.anchor = det_anchors(head.det_head.instance_bank.num_anchor)
        logger.info("det anchors: random grid (k-means file missing)")
    if head.get("map_head") and _missing(head.map_head.instance_bank.anchor):
        head.map_head.instance_bank.anchor = map_anchors(head.map_head.instance_bank.num_anchor)
        logger.info("map anchors: random segments (k-means file missing)")
    motion = head.get("motion_plan_head")
    if motion and head.task_config.with_motion_plan:
        if _missing(motion.motion_anchor):
            motion.motion_anchor = rng.normal(size=(10, motion.fut_mode, motion.fut_ts, 2)).astype(np.float32)
        if _missing(motion.plan_anchor):
            motion.plan_anchor = rng.normal(size=(3, motion.ego_fut_mode, motion.ego_fut_ts, 2)).astype(np.float32)
    pretrained = cfg.model.img_backbone.get("pretrained")
    if pretrained and not os.path.exists(pretrained):
        cfg.model.img_backbone.pretrained = None
        logger.info("backbone: %s missing, random init", pretrained)
    return cfg


def to_device(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, list):
        return [to_device(x, device) for x in obj]
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


class Timer:
    """Wall-clock (and process CPU) time of named sections, with device synchronisation at both ends.

    On a shared CPU the CPU time tells contention apart from work: wall >> CPU / threads means the
    process waited for cores.
    """

    def __init__(self) -> None:
        from projects.mmdet3d_plugin.device import synchronize

        self.sync = synchronize
        self.times: Dict[str, float] = {}
        self.cpu_times: Dict[str, float] = {}

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        self.sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        yield
        self.sync()
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start
        self.cpu_times[name] = self.cpu_times.get(name, 0.0) + time.process_time() - cpu_start

    def summary(self) -> Dict[str, float]:
        out = {k: round(v, 3) for k, v in self.times.items()}
        out["total"] = round(sum(self.times.values()), 3)
        out["total_cpu"] = round(sum(self.cpu_times.values()), 3)
        return out


def reset_temporal_state(model) -> None:
    for module in model.modules():
        if type(module).__name__ in ("InstanceBank", "InstanceQueue"):
            module.reset()


def inference_frame(model, data: dict, timer: Timer) -> None:
    with torch.no_grad():
        with timer.section("backbone"):
            feats = model.extract_feat(data["img"])
        with timer.section("heads"):
            outs = model.head(feats, data)
        with timer.section("post_process"):
            model.head.post_process(outs, data)


def build_floor(cfg) -> torch.nn.Module:
    """The config's backbone + neck as mmdet builds them: no activation checkpointing, no weights file."""
    from mmdet.models import build_backbone, build_neck

    backbone = dict(cfg.model.img_backbone, with_cp=False, pretrained=None)
    layers = [build_backbone(backbone)]
    if cfg.model.get("img_neck") is not None:
        layers.append(build_neck(cfg.model.img_neck))
    return torch.nn.Sequential(*layers)


def floor_infer(floor: torch.nn.Module, img: torch.Tensor, timer: Timer) -> None:
    """Forward of the floor on ``img`` [B, N, 3, H, W], without gradients."""
    floor.eval()
    with torch.no_grad(), timer.section("floor"):
        floor(img.flatten(end_dim=1))


def floor_train(floor: torch.nn.Module, img: torch.Tensor, timer: Timer) -> None:
    """Forward + backward of the floor in training mode (a scalar loss over every output level)."""
    floor.train()
    floor.zero_grad(set_to_none=True)
    with timer.section("floor"):
        outs = floor(img.flatten(end_dim=1))
        sum(out.float().mean() for out in outs).backward()


def medians(timings: List[Dict[str, float]]) -> Dict[str, float]:
    """Per-key median over repeated ``Timer.summary()`` dicts."""
    return {key: round(statistics.median(t[key] for t in timings), 3) for key in timings[0]}


def train_step(model, optimizer, data: dict, timer: Timer, clip: dict) -> Dict[str, float]:
    with timer.section("backbone"):
        feats, depths = model.extract_feat(data["img"], True, data)
    with timer.section("heads"):
        outs = model.head(feats, data)
    with timer.section("losses"):
        losses = model.head.loss(outs, data)
        if depths is not None and "gt_depth" in data:
            losses["loss_dense_depth"] = model.depth_branch.loss(depths, data["gt_depth"])
        total = sum(losses.values())
    with timer.section("backward"):
        optimizer.zero_grad()
        total.backward()
    with timer.section("optimiser"):
        if clip:
            from projects.mmdet3d_plugin.ops import optim

            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            optim.clip_grad_norm(params, optimizer=optimizer, **clip)
        optimizer.step()
    return {k: float(v) for k, v in losses.items()}


def main(argv: List[str] = None) -> Dict[str, object]:
    args = parse_args(argv)
    if not logger.handlers:  # own handler: the plugin's imports may configure the root logger
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    import projects.mmdet3d_plugin  # noqa: F401  (registers the modules)
    from mmdet.models import build_detector

    from projects.mmdet3d_plugin.apis.optimizer import build_optimizer

    from projects.mmdet3d_plugin.device import get_device, max_memory_allocated
    from tests.models.batch_factory import inference_data, make_batch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = prepare_config(args.config)
    device = get_device()
    torch.manual_seed(args.seed)
    model = build_detector(cfg.model)
    logging.getLogger("mmcv").setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
    model.init_weights()
    model.to(device)
    width, height = cfg.get("input_shape", (704, 256))
    if args.image_hw:
        height, width = args.image_hw
    num_sample = cfg.get("num_sample", 20)
    strides = cfg.get("strides", [4, 8, 16, 32])[: cfg.get("num_depth_layers", 3)]

    def batch(frame: int) -> dict:
        data = make_batch(
            batch_size=args.batch_size, image_hw=(height, width), frame=frame, num_gt=(30,),
            num_map_gt=(10,), depth_strides=strides, num_sample=num_sample, seed=args.seed,
        )
        return to_device(data, device)

    # no autocast object at all on CPU: torch 2.1 refuses even a disabled fp16 CPU autocast on entry
    use_fp16 = args.fp16 and device.type != "cpu"
    autocast = torch.autocast(device.type, dtype=torch.float16) if use_fp16 else nullcontext()
    report: Dict[str, object] = {
        "config": os.path.relpath(args.config, ROOT),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "image_hw": [height, width],
        "params": sum(p.numel() for p in model.parameters()),
        "host_malloc": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")} or "glibc defaults",
    }

    floor = None if args.skip_floor else build_floor(cfg).to(device)

    def run_pairs(label: str, run_model, run_floor) -> None:
        """Warm-up, then ``repeats`` model runs, each right after a floor run; medians and the ratio."""
        model_times, floor_times = [], []
        for index in range(args.repeats + 1):
            if floor is not None:
                timer = Timer()
                run_floor(index, timer)
                if index:
                    floor_times.append(timer.summary())
            timer = Timer()
            run_model(index, timer)
            report[f"{label}{index}_s"] = timer.summary()
            logger.info("%s %d: %s", label, index, report[f"{label}{index}_s"])
            if index:
                model_times.append(timer.summary())
        name = "infer" if label.startswith("infer") else "train"
        report[f"{name}_median_s"] = medians(model_times)
        if floor_times:
            floor_s = medians(floor_times)["total"]
            report[f"floor_{name}_s"] = floor_s
            report[f"{name}_ratio"] = round(report[f"{name}_median_s"]["total"] / floor_s, 3)

    if not args.skip_infer:
        model.eval()
        reset_temporal_state(model)

        def infer(frame: int, timer: Timer) -> None:
            with autocast:
                inference_frame(model, inference_data(batch(frame)), timer)

        def infer_floor(frame: int, timer: Timer) -> None:
            with autocast:
                floor_infer(floor, batch(frame)["img"], timer)

        run_pairs("infer_frame", infer, infer_floor)
        report["infer_peak_rss_gib"] = round(peak_rss_gib(), 3)
        report["infer_peak_device_gib"] = round(max_memory_allocated() / 2**30, 3)

    if not args.skip_train:
        model.train()
        reset_temporal_state(model)
        optimizer = build_optimizer(model, cfg.optimizer)
        clip = (cfg.get("optimizer_config") or {}).get("grad_clip")
        losses: Dict[str, float] = {}

        def train(step: int, timer: Timer) -> None:
            with autocast:
                losses.update(train_step(model, optimizer, batch(step), timer, clip))

        def train_floor(step: int, timer: Timer) -> None:
            with autocast:
                floor_train(floor, batch(step)["img"], timer)

        run_pairs("train_step", train, train_floor)
        report["train_loss"] = round(sum(losses.values()), 4)
        report["train_peak_rss_gib"] = round(peak_rss_gib(), 3)
        report["train_peak_device_gib"] = round(max_memory_allocated() / 2**30, 3)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                train_step(model, optimizer, batch(args.repeats + 1), Timer(), clip)
            logger.info(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))

    logger.info(json.dumps(report, indent=2))
    for name, what in (("infer", "inference frame"), ("train", "training step")):
        if f"{name}_ratio" in report:
            logger.info("%s: %.2f s = %.2fx the floor (%.2f s, backbone + neck alone; medians of %d)", what,
                        report[f"{name}_median_s"]["total"], report[f"{name}_ratio"], report[f"floor_{name}_s"],
                        args.repeats)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
