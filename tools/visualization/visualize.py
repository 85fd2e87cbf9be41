"""Render a results file of tools/test.py: one image per frame (cameras + BEV) and one video per scene.

``python tools/visualization/visualize.py CONFIG [--result-path FILE] [--out-dir DIR] [--scene NAME ...]``
writes ``<out-dir>/frames/<scene>/<index>.png`` and ``<out-dir>/<scene>.mp4`` (GIF where OpenCV cannot write
mp4). The default results file is the one tools/test.py writes: ``work_dirs/<config name>/results.pkl``
(``results_mini.pkl`` for v1.0-mini data).
"""
import argparse
import json
import os
import os.path as osp
import pickle
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.cli_utils import die, load_config, run_main  # noqa: E402
from tools.visualization.frame import ResultsMismatch, check_results, frame_gt, frame_pred  # noqa: E402
from tools.visualization.render import RenderOptions, render_frame  # noqa: E402
from tools.visualization.video import write_video  # noqa: E402


def scene_names(dataset) -> Dict[str, str]:
    """scene token -> scene name from the dataset's ``<data_root>/<version>/scene.json`` (empty if absent)."""
    path = osp.join(dataset.data_root or "", dataset.version, "scene.json")
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return {scene["token"]: scene["name"] for scene in json.load(f)}


def scenes_of(dataset) -> "OrderedDict[str, List[int]]":
    """Scene name -> its sample indices in dataset order (scenes in order of first appearance)."""
    names = scene_names(dataset)
    scenes: "OrderedDict[str, List[int]]" = OrderedDict()
    for index, info in enumerate(dataset.data_infos):
        token = info.get("scene_token", "")
        name = names.get(token, token[:8] or "scene")
        scenes.setdefault(name, []).append(index)
    return scenes


def frame_data(dataset, index: int) -> dict:
    """``get_data_info`` of sample ``index`` with the camera names (the info's camera order) added."""
    data = dataset.get_data_info(index)
    data["cam_names"] = list(dataset.data_infos[index].get("cams", {}).keys())
    return data


def render_results(dataset, results: Sequence, out_dir: str, scenes: Optional[Sequence[str]] = None,
                   fps: float = 2.0, options: Optional[RenderOptions] = None, video: bool = True,
                   source: str = "results") -> Dict[str, List[str]]:
    """Render every frame of the selected scenes (default all) and join each scene into a video.

    Args:
        dataset: the NuScenes3DDataset the results were computed on (``data.test``, camera modality on).
        results: tools/test.py's per-sample results, dataset order.
        scenes: scene names (or indices as strings) to render.
    Returns:
        ``{'frames': [image paths], 'videos': [video paths]}``.
    Raises:
        ResultsMismatch: the results do not match the dataset, or a scene is unknown (one-line message).
    """
    from tqdm import tqdm

    results = check_results(results, len(dataset), source)
    all_scenes = scenes_of(dataset)
    selected = list(all_scenes) if not scenes else [_scene_name(all_scenes, s) for s in scenes]
    frames_out, videos = [], []
    total = sum(len(all_scenes[name]) for name in selected)
    with tqdm(total=total, desc="rendering", unit="frame", file=sys.stderr) as bar:
        for name in selected:
            images = []
            folder = osp.join(out_dir, "frames", name)
            os.makedirs(folder, exist_ok=True)
            for index in all_scenes[name]:
                gt = frame_gt(frame_data(dataset, index), scene=name)
                image = render_frame(gt, frame_pred(results[index]), dataset.CLASSES, dataset.MAP_CLASSES,
                                     options, title=f"{name}  frame {index}")
                path = osp.join(folder, f"{index:05d}.png")
                _write_png(path, image)
                frames_out.append(path)
                images.append(image)
                bar.update(1)
            if video:
                videos.append(write_video(images, osp.join(out_dir, f"{name}.mp4"), fps))
    return dict(frames=frames_out, videos=videos)


def _scene_name(all_scenes: "OrderedDict[str, List[int]]", wanted: str) -> str:
    if wanted in all_scenes:
        return wanted
    if wanted.isdigit() and int(wanted) < len(all_scenes):
        return list(all_scenes)[int(wanted)]
    raise ResultsMismatch(f"--scene {wanted}: not in the dataset (scenes: {', '.join(all_scenes)}, "
                          f"or an index 0..{len(all_scenes) - 1}).")


def _write_png(path: str, image) -> None:
    import cv2

    if not cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}; check that the output folder is writable.")


def default_result_path(config: str, dataset) -> str:
    """The raw results tools/test.py writes by default: ``work_dirs/<config name>/results[_mini].pkl``."""
    work_dir = osp.join("work_dirs", osp.splitext(osp.basename(config))[0])
    names = [dataset.raw_results_name()] if hasattr(dataset, "raw_results_name") else []
    names += ["results.pkl", "results_mini.pkl"]
    paths = [osp.join(work_dir, name) for name in names]
    return next((path for path in paths if osp.isfile(path)), paths[0])


def show(dataset, results: Sequence, out_dir: str, scenes: Optional[Sequence[str]] = None, fps: float = 2.0,
         options: Optional[RenderOptions] = None, video: bool = True, source: str = "results") -> Dict[str, List[str]]:
    """:func:`render_results`, then print where the frames and videos are; a mismatch ends in one line."""
    try:
        written = render_results(dataset, results, out_dir, scenes, fps, options, video, source=source)
    except ResultsMismatch as exc:
        die(str(exc))
    print(f"rendered {len(written['frames'])} frames under {osp.join(out_dir, 'frames')}")
    if written["frames"]:
        print(f"frame image: {written['frames'][-1]}")
    for path in written["videos"]:
        print(f"scene video: {path}")
    return written


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Render SparseDrive results: cameras + BEV per frame, a video "
                                                 "per scene")
    parser.add_argument("config", help="the config the results were computed with (its data.test is rendered)")
    parser.add_argument("--result-path", help="raw results of tools/test.py (default "
                                              "work_dirs/<config name>/results.pkl, results_mini.pkl for mini data)")
    parser.add_argument("--out-dir", help="output folder (default vis/<config name>)")
    parser.add_argument("--scene", nargs="+", help="scene names or indices to render (default: all)")
    parser.add_argument("--fps", type=float, default=2.0, help="video frame rate (key frames are 2 Hz)")
    parser.add_argument("--score-thr", type=float, default=RenderOptions.score_threshold,
                        help="lowest score of a predicted box shown")
    parser.add_argument("--map-score-thr", type=float, default=RenderOptions.map_score_threshold,
                        help="lowest score of a predicted map polyline shown")
    parser.add_argument("--gt-in-cameras", action="store_true", help="also project the ground-truth boxes")
    parser.add_argument("--no-video", action="store_true", help="frames only")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE", help="override config settings")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    import mmcv

    from projects.mmdet3d_plugin.datasets.builder import build_dataset

    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test)
    result_path = args.result_path or default_result_path(args.config, dataset)
    if not osp.isfile(result_path):
        die(f"results file {result_path} does not exist; run tools/test.py CONFIG CKPT --eval bbox first "
            "(it writes the raw results into work_dirs/<config name>/) or pass --result-path.")
    try:
        results = mmcv.load(result_path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        die(f"results file {result_path} cannot be read ({type(exc).__name__}); pass the raw results of tools/test.py.")
    out_dir = args.out_dir or osp.join("vis", osp.splitext(osp.basename(args.config))[0])
    options = RenderOptions(score_threshold=args.score_thr, map_score_threshold=args.map_score_thr,
                            gt_in_cameras=args.gt_in_cameras)
    show(dataset, results, out_dir, args.scene, args.fps, options, not args.no_video, source=result_path)


if __name__ == "__main__":
    run_main(main)
