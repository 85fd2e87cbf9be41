"""Session fixtures for the data-preparation tests: one tiny synthetic nuScenes set and its info pkls."""
import os
from typing import Dict, List

import pytest

# Two scenes (one mini_train, one mini_val) of 14 key frames: enough for 12-step agent futures.
TINY = dict(scenes=2, samples=14, agents=12, sweeps=1, seed=0)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Dict[str, object]:
    """Generate the tiny set once; returns {root, worlds (SceneWorld per scene, in scene order), **TINY}."""
    from tools.data_converter import synthetic_nuscenes, synthetic_world

    root = str(tmp_path_factory.mktemp("synthetic_nuscenes"))
    worlds: List[synthetic_world.SceneWorld] = []
    build = synthetic_world.build_scene

    def recording(*args, **kwargs):
        worlds.append(build(*args, **kwargs))
        return worlds[-1]

    synthetic_world.build_scene = recording
    try:
        synthetic_nuscenes.generate(root, **TINY)
    finally:
        synthetic_world.build_scene = build
    return dict(root=root, worlds=worlds, **TINY)


@pytest.fixture(scope="session")
def nusc(synthetic):
    from nuscenes import NuScenes

    return NuScenes(version="v1.0-mini", dataroot=synthetic["root"], verbose=False)


@pytest.fixture(scope="session")
def infos(synthetic, tmp_path_factory) -> Dict[str, object]:
    """Converter output on the tiny set: {train, val (info lists), train_path, version}."""
    import pickle

    from tools.data_converter.nuscenes_converter import create_nuscenes_infos

    out = str(tmp_path_factory.mktemp("infos"))
    train_path, val_path = create_nuscenes_infos(synthetic["root"], out, synthetic["root"], "nuscenes",
                                                 version="v1.0-mini")
    assert os.path.dirname(train_path) == os.path.join(out, "mini"), "mini infos must go to <out>/mini"
    with open(train_path, "rb") as f:
        train = pickle.load(f)
    with open(val_path, "rb") as f:
        val = pickle.load(f)
    return dict(train=train["infos"], val=val["infos"], train_path=train_path, version=train["metadata"]["version"])
