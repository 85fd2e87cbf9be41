"""Render SparseDrive results: one image per frame (six cameras + bird's-eye view) and a video per scene.

``python tools/visualization/visualize.py CONFIG [--result-path work_dirs/<config>/results.pkl]`` or
``bash tools/visualize.sh CONFIG``; ``tools/test.py --show-dir DIR`` renders while it evaluates.
"""
