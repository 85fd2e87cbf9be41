"""Learning check: train the learning-check stage 1 then stage 2 on one short synthetic scene and show that
every head learns, by evaluating on the same frames before and after training.

``python tools/learn_check.py [--work-dir work_dirs/learn_check]`` (``make learn-check``):
  1. a 2-scene synthetic nuScenes (the clip is its mini_val scene), infos and anchors under <work-dir>/data
  2. metrics of the untrained stage-1 model; tools/train.py stage 1; metrics again
  3. metrics of stage 2 started from stage 1's checkpoint (motion + planning untrained); stage 2; metrics
  4. a before/after table with the thresholds, the loss curves (loss_curves.png) and the last frame's render
     (last_frame_bev.png, last_frame.png); exit 1 when a threshold fails.
Thresholds: detection mAP >= 0.5 and map mAP >= 0.5 after stage 1 (and stay so after stage 2); motion minADE
(car) and planning L2 at most half of their values before stage 2.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.cli_utils import die, load_config, run_main, setup_backend  # noqa: E402

CONFIG1 = "projects/configs/demo/sparsedrive_learn_stage1.py"
CONFIG2 = "projects/configs/demo/sparsedrive_learn_stage2.py"
# one scene is mini_val: the clip. Agents start at most 30 m beyond the intersection box, so that every class is
# inside its evaluation range (30-50 m from the ego) in some frames: with the default 70 m, bus, barrier and
# traffic cone never are, and the devkit's mAP (a mean over all ten classes) could not pass 0.7.
CLIP = dict(scenes=2, samples=8, agents=16, sweeps=1, seed=0, reach=30.0)
DET_GRID = 10  # det anchors: a DET_GRID x DET_GRID grid over +-40 m (no anchor sits on a ground-truth box)
NO_MATCH = 1.0  # the motion evaluator's minADE when no prediction matched a ground-truth agent
# (key, label, rule): "min" passes when after >= value, "half" when after <= value * before (same stage)
METRICS = (
    ("img_bbox_NuScenes/mAP", "detection mAP", ("min", 0.5)),
    ("mAP_normal", "map mAP", ("min", 0.5)),
    ("car_min_ade_err", "motion minADE car (m)", ("half", 0.5)),
    ("L2", "planning L2 avg (m)", ("half", 0.5)),
    ("img_bbox_NuScenes/NDS", "detection NDS", None),
    ("pedestrian_min_ade_err", "motion minADE ped (m)", None),
    ("obj_box_col", "planning collision", None),
)


def prepare_data(root: str) -> None:
    """Synthetic clip, info pkls and anchor files under ``root`` (kept when already there).

    Det anchors are a grid and map anchors the repository's k-means over both scenes; motion and planning
    anchors are fixed fans of straight and curved paths, since k-means needs futures longer than the clip.
    """
    import numpy as np

    from tools.data_converter import synthetic_nuscenes
    from tools.data_converter.nuscenes_converter import create_nuscenes_infos
    from tools.kmeans import kmeans_map, kmeans_utils

    data_root, info_root, anchor_dir = (osp.join(root, name) for name in ("nuscenes", "infos", "anchors"))
    if not osp.isfile(osp.join(info_root, "mini", "nuscenes_infos_val.pkl")):
        synthetic_nuscenes.generate(data_root, **CLIP)
        create_nuscenes_infos(data_root, info_root, data_root, "nuscenes", version="v1.0-mini")
    if not osp.isfile(osp.join(anchor_dir, "kmeans_plan_6.npy")):
        infos = [info for split in ("train", "val")
                 for info in kmeans_utils.load_infos(osp.join(info_root, "mini", f"nuscenes_infos_{split}.pkl"))]
        side = (np.arange(DET_GRID) + 0.5) / DET_GRID * 80 - 40
        det = np.array([[x, y, -1.0, 0, 0, 0, 1, 0, 0, 0, 0] for x in side for y in side], dtype=np.float32)
        det[:, 3:6] = np.log([4.0, 2.0, 1.6])  # a car-sized box; every class regresses from it
        os.makedirs(anchor_dir, exist_ok=True)
        np.save(osp.join(anchor_dir, "kmeans_det_900.npy"), det)
        kmeans_utils.save(kmeans_map.map_anchors(infos, seed=0, k=30), anchor_dir, "kmeans_map_100.npy")
        # agent frame (x along the heading), 12 steps of 0.5 s: standing, slow, fast, turning either way
        motion = path_fan([(0.0, 0.0), (0.8, 0.0), (2.5, 0.0), (5.0, 0.0), (2.5, 0.12), (2.5, -0.12)], 12, 0.0)
        np.save(osp.join(anchor_dir, "kmeans_motion_6.npy"), np.tile(motion[None], (10, 1, 1, 1)))
        # LiDAR frame (the ego heads +y), 6 steps, per command (right, left, straight) 6 speeds
        speeds = [0.5, 1.5, 2.5, 3.5, 4.5, 6.0]
        plan = np.stack([path_fan([(v, turn) for v in speeds], 6, np.pi / 2) for turn in (-0.2, 0.2, 0.0)])
        np.save(osp.join(anchor_dir, "kmeans_plan_6.npy"), plan)


def path_fan(modes, steps: int, heading: float):
    """Positions [M, steps, 2] of paths from the origin: per mode (metres per step, turn per step in radians)."""
    import numpy as np

    paths = np.zeros((len(modes), steps, 2), dtype=np.float32)
    for m, (step, turn) in enumerate(modes):
        yaw = heading + turn * (np.arange(steps) + 0.5)
        paths[m] = np.cumsum(step * np.stack([np.cos(yaw), np.sin(yaw)], -1), 0)
    return paths


def evaluate(config: str, checkpoint: Optional[str], out_dir: str, with_motion_plan: bool) -> Dict:
    """Metrics of ``config``'s model (``checkpoint`` loaded non-strictly; random init when None) on the clip.

    Returns ``{'metrics': {...}, 'results': per-sample results, 'dataset': the test dataset}``.
    """
    from mmcv.runner import set_random_seed
    from mmdet.models import build_detector

    from projects.mmdet3d_plugin.apis.checkpoint import load_weights
    from projects.mmdet3d_plugin.apis.parallel import wrap_model
    from projects.mmdet3d_plugin.apis.test import single_gpu_test
    from projects.mmdet3d_plugin.datasets import build_dataloader
    from projects.mmdet3d_plugin.datasets.builder import build_dataset

    cfg = load_config(config)
    set_random_seed(0)
    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test)
    loader = build_dataloader(dataset, samples_per_gpu=1, workers_per_gpu=0, num_gpus=1, dist=False, shuffle=False,
                              nonshuffler_sampler=cfg.data.get("nonshuffler_sampler"))
    model = build_detector(cfg.model, test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    if checkpoint is not None:
        load_weights(model, checkpoint, strict=False)
    results = single_gpu_test(wrap_model(model, False), loader)
    eval_mode = dict(cfg.evaluation.eval_mode, with_tracking=False, with_motion=with_motion_plan,
                     with_planning=with_motion_plan)
    metrics = dataset.evaluate(results, eval_mode=eval_mode, jsonfile_prefix=out_dir)
    return dict(metrics=metrics, results=results, dataset=dataset)


def train(config: str, work_dir: str, env: Dict[str, str], iters: Optional[int] = None,
          load_from: Optional[str] = None) -> str:
    """tools/train.py in a child process (``iters`` overrides the config's); returns the final checkpoint.

    A work dir that already holds a final checkpoint is reused (delete it to train again).
    """
    from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint

    checkpoint = final_checkpoint(work_dir) if osp.isdir(work_dir) else None
    if checkpoint is not None:
        print(f"reusing {checkpoint} (delete {work_dir} to train again)")
        return checkpoint
    cmd = [sys.executable, "tools/train.py", config, "--work-dir", work_dir, "--no-validate", "--seed", "0"]
    if load_from:
        cmd += ["--load-from", load_from]
    if iters:
        cmd += ["--cfg-options", f"runner.max_iters={iters}", f"checkpoint_config.interval={iters}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    checkpoint = final_checkpoint(work_dir)
    if proc.returncode != 0 or checkpoint is None:
        die(f"training {config} failed (exit {proc.returncode}); its log is under {work_dir}.", code=1)
    return checkpoint


def read_losses(work_dir: str) -> Dict[str, List[float]]:
    """Per logged training iteration: 'iter' and every loss key of the newest ``*.log.json`` in ``work_dir``."""
    from tools.analysis_tools.train_report import read_json_log

    series: Dict[str, List[float]] = {}
    for entry in read_json_log(work_dir):
        if entry.get("mode") == "train":
            for key, value in entry.items():
                if key == "iter" or "loss" in key:
                    series.setdefault(key, []).append(float(value))
    return series


def head_losses(series: Dict[str, List[float]]) -> Dict[str, List[float]]:
    """Sum of each head's loss terms (det_*, map_*, motion_*, planning_*, depth) per logged iteration."""
    import numpy as np

    heads: Dict[str, List[float]] = {}
    for prefix in ("det", "map", "motion", "planning", "loss_dense_depth"):
        keys = [k for k in series if k != "loss" and (k.startswith(prefix + "_") or k == prefix)]
        if keys:
            heads[prefix.replace("loss_dense_", "")] = list(np.sum([series[k] for k in keys], axis=0))
    return heads


def plot_losses(stages: Dict[str, Dict[str, List[float]]], path: str) -> None:
    """One panel per stage: each head's summed loss against the iteration (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4))
    for ax, (name, series) in zip(list(getattr(axes, "flat", [axes])), stages.items()):
        for head, values in head_losses(series).items():
            ax.plot(series["iter"], values, label=head)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (sum of the head's terms)")
        ax.set_title(name)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def judge(before1: Dict, after1: Dict, before2: Dict, after2: Dict, mode: str = "thresholds") -> List[List[str]]:
    """Table rows [metric, before, after, threshold, verdict]; det/map from stage 1, motion/planning stage 2.

    ``mode`` 'thresholds' applies the rules of METRICS; 'improvement' only asks each gated metric to move the
    right way (a short run). A minADE of exactly NO_MATCH means the evaluator matched no agent (nothing to
    compare): 'n/a', a failure under 'thresholds'.
    """
    rows = []
    for key, label, rule in METRICS:
        stage2_metric = key in ("car_min_ade_err", "pedestrian_min_ade_err", "L2", "obj_box_col")
        before = (before2 if stage2_metric else before1).get(key)
        after = (after2 if stage2_metric else after1).get(key)
        threshold, verdict = "-", "-"
        if rule is not None and (before is None or after is None or after != after):
            verdict = "FAIL"
        elif rule is not None and rule[0] == "min":
            final = after2.get(key, after)
            limit = rule[1] if mode == "thresholds" else before
            threshold = f">= {rule[1]:g}" if mode == "thresholds" else "> before"
            ok = after >= limit and final >= limit if mode == "thresholds" else after > limit and final > limit
            verdict = "pass" if ok else "FAIL"
            if final != after:
                label = f"{label} (stage 2: {final:.3f})"
        elif rule is not None:
            threshold = f"<= {rule[1]:g} x before" if mode == "thresholds" else "< before"
            if key.endswith("min_ade_err") and NO_MATCH in (before, after):
                verdict = "FAIL (no agent matched)" if mode == "thresholds" else "n/a (no agent matched)"
            else:
                verdict = "pass" if after <= (rule[1] * before if mode == "thresholds" else before) else "FAIL"
        rows.append([label, _fmt(before), _fmt(after), threshold, verdict])
    return rows


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_table(rows: List[List[str]]) -> str:
    header = ["metric", "before", "after", "threshold", "verdict"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in [header] + rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render_last_frame(evaluation: Dict, out_dir: str) -> List[str]:
    """BEV and full render of the clip's last frame; returns the two paths."""
    import cv2

    from tools.visualization.bev import render_bev
    from tools.visualization.frame import frame_gt, frame_pred
    from tools.visualization.render import render_frame
    from tools.visualization.visualize import frame_data

    dataset, index = evaluation["dataset"], len(evaluation["dataset"]) - 1
    gt, pred = frame_gt(frame_data(dataset, index)), frame_pred(evaluation["results"][index])
    paths = [osp.join(out_dir, "last_frame_bev.png"), osp.join(out_dir, "last_frame.png")]
    images = [render_bev(gt, pred, dataset.CLASSES, dataset.MAP_CLASSES),
              render_frame(gt, pred, dataset.CLASSES, dataset.MAP_CLASSES, title=f"learn-check frame {index}")]
    for path, image in zip(paths, images):
        cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return paths


def save_small(source: str, path: str, width: int) -> None:
    """``source`` image scaled to ``width`` pixels wide, as an optimised PNG at ``path``."""
    from PIL import Image

    with Image.open(source) as image:
        height = round(image.height * width / image.width)
        small = image.convert("RGB").resize((width, height), Image.LANCZOS)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    small.save(path, optimize=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train both stages on one synthetic scene and check that every "
                                                 "head learns (before/after metrics on the same frames)")
    parser.add_argument("--work-dir", default="work_dirs/learn_check", help="data, checkpoints, table and plots")
    parser.add_argument("--iters1", type=int, help="stage-1 iterations (default: the config's, 120 passes: 960)")
    parser.add_argument("--iters2", type=int, help="stage-2 iterations (default: the config's, 20 passes: 160)")
    parser.add_argument("--check", choices=["thresholds", "improvement"], default="thresholds",
                        help="'thresholds': the pass marks above; 'improvement': each gated metric only has to "
                             "move the right way (for short runs, e.g. the test suite's)")
    parser.add_argument("--readme-image", help="also write the last frame's render, 640 px wide, here (the README's "
                                               "image: docs/images/learn_check_frame.png)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    work_dir = osp.abspath(args.work_dir)
    data_dir = osp.join(work_dir, "data")
    os.environ["SPARSEDRIVE_LEARN_ROOT"] = data_dir
    start = time.time()
    times = {}
    prepare_data(data_dir)
    times["data"] = time.time() - start
    load_config(CONFIG1)  # imports the plugin before the backend is set up
    setup_backend()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    stage1, stage2 = osp.join(work_dir, "stage1"), osp.join(work_dir, "stage2")

    t = time.time()
    before1 = evaluate(CONFIG1, None, osp.join(work_dir, "eval", "stage1_before"), False)["metrics"]
    times["evaluation"] = time.time() - t
    t = time.time()
    ckpt1 = train(CONFIG1, stage1, env, args.iters1)
    times["stage 1 training"] = time.time() - t
    t = time.time()
    after1 = evaluate(CONFIG1, ckpt1, osp.join(work_dir, "eval", "stage1_after"), False)["metrics"]
    before2 = evaluate(CONFIG2, ckpt1, osp.join(work_dir, "eval", "stage2_before"), True)["metrics"]
    times["evaluation"] += time.time() - t
    t = time.time()
    ckpt2 = train(CONFIG2, stage2, env, args.iters2, load_from=ckpt1)
    times["stage 2 training"] = time.time() - t
    t = time.time()
    final = evaluate(CONFIG2, ckpt2, osp.join(work_dir, "eval", "stage2_after"), True)
    times["evaluation"] += time.time() - t
    after2 = final["metrics"]

    rows = judge(before1, after1, before2, after2, args.check)
    plot_path = osp.join(work_dir, "loss_curves.png")
    plot_losses({"stage 1": read_losses(stage1), "stage 2": read_losses(stage2)}, plot_path)
    frames = render_last_frame(final, work_dir)
    if args.readme_image:
        save_small(frames[1], args.readme_image, width=640)
    table = format_table(rows)
    with open(osp.join(work_dir, "learn_check.md"), "w") as f:
        f.write(table + "\n")
    print("\nlearning check: det / map before and after stage 1, motion / planning before and after stage 2")
    print(table)
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f", total {time.time() - start:.0f} s")
    print(f"loss curves: {plot_path}\nlast frame: {frames[0]} (BEV), {frames[1]} (cameras + BEV)")
    failed = [r[0] for r in rows if r[4].startswith("FAIL")]
    if failed:
        print(f"learn-check FAILED: {', '.join(failed)}")
        sys.exit(1)
    print("learn-check passed: every head learns")


if __name__ == "__main__":
    run_main(main)
