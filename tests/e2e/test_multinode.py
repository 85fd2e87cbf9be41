"""Several machines, played by processes of this one that share nothing but 127.0.0.1: two torchrun "nodes"
(``NNODES=2``, ``NODE_RANK=0/1``, one process each, separate work dirs) train and test through
tools/dist_{train,test}.sh, Slurm tasks test through tools/slurm_test.sh with a fake ``srun``, and a killed
node stops the other. These are the README's "Several machines" commands.
"""
import glob
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Dict, List

import numpy as np
import pytest
import torch

from .conftest import CONFIG1, ROOT, RUN_TIMEOUT_S, run

pytestmark = pytest.mark.slow
TRAIN_ARGS = ["--deterministic", "--no-validate", "--cfg-options", "runner.max_iters=8", "checkpoint_config.interval=8"]
# the fake srun: runs the command as --ntasks local tasks with the variables Slurm gives each task
FAKE_SRUN = """#!/usr/bin/env bash
ntasks=1; per_node=1
while [ $# -gt 0 ]; do
    case "$1" in --ntasks=*) ntasks=${1#*=} ;; --ntasks-per-node=*) per_node=${1#*=} ;; --*) ;; *) break ;; esac
    shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_NTASKS=$ntasks SLURM_LOCALID=$((i % per_node)) SLURM_NODEID=$((i / per_node)) \\
        SLURM_NODELIST="sd-node[1-2]" SLURM_JOB_ID=4242 "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nodes(commands: List[List[str]], env: Dict[str, str], log_dir: str) -> List[subprocess.Popen]:
    """One launch per node, each in its own process group, rendezvous at 127.0.0.1:<free port>.

    Node r's output goes to ``log_dir/node<r>.out`` (a pipe nobody reads while waiting would fill up and
    block rank 0 in its start-up logging, and with it the whole world)."""
    port = str(free_port())
    os.makedirs(log_dir, exist_ok=True)
    nodes = []
    for rank, command in enumerate(commands):
        with open(os.path.join(log_dir, f"node{rank}.out"), "w") as out:
            nodes.append(subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                env=dict(env, NNODES=str(len(commands)), NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                         MASTER_PORT=port)))
    return nodes


def node_outputs(nodes: List[subprocess.Popen], log_dir: str) -> List[str]:
    """Kill the nodes still running; what each node printed."""
    for node in nodes:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    return [read(os.path.join(log_dir, f"node{rank}.out")) for rank in range(len(nodes))]


def finish(nodes: List[subprocess.Popen], log_dir: str, timeout_s: float = RUN_TIMEOUT_S) -> List[str]:
    """Wait for every node; the outputs, or an AssertionError with their ends when one fails or times out."""
    deadline = time.time() + timeout_s
    while any(node.poll() is None for node in nodes) and time.time() < deadline:
        time.sleep(0.5)
    outputs = node_outputs(nodes, log_dir)
    failed = [(i, node.returncode) for i, node in enumerate(nodes) if node.returncode != 0]
    assert not failed, f"nodes failed {failed}:\n" + "\n".join(f"--- node {i}\n{o[-3000:]}" for i, o in enumerate(outputs))
    return outputs


def state_dict(path: str) -> Dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_results(actual, expected, where: str = "results") -> None:
    """Equal structure and values (tensors / arrays to 1e-5)."""
    assert type(actual) is type(expected), f"{where}: {type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_same_results(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: {len(actual)} items != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_results(a, e, f"{where}[{i}]")
    elif isinstance(expected, (torch.Tensor, np.ndarray)):
        a, e = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
        assert a.shape == e.shape and torch.allclose(a, e, atol=1e-5, rtol=1e-5), f"{where}: values differ"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.fixture(scope="module")
def two_node_train(e2e_env, tmp_path_factory) -> List[str]:
    """Work dirs of node 0 and node 1 after 8 iterations of stage 1, the arguments of the ``stage1_dist`` fixture."""
    work_dirs = [str(tmp_path_factory.mktemp(f"node{rank}_train")) for rank in range(2)]
    env = dict(e2e_env, SPARSEDRIVE_BATCH_SIZE="2", SPARSEDRIVE_NUM_GPUS="2")
    log_dir = str(tmp_path_factory.mktemp("node_train_logs"))
    finish(start_nodes([["bash", "tools/dist_train.sh", CONFIG1, "1", "--work-dir", work, *TRAIN_ARGS]
                        for work in work_dirs], env, log_dir), log_dir)
    return work_dirs


def test_two_nodes_train_the_same_weights_as_one_node_with_two_processes(two_node_train, stage1_dist):
    node0, node1 = two_node_train
    assert not glob.glob(os.path.join(node1, "*.pth")), "only rank 0 (node 0) writes checkpoints"
    with open(sorted(glob.glob(os.path.join(node0, "*.log")))[-1]) as f:
        assert "world size 2" in f.read(), "the two nodes must form one world of 2 processes"
    two_nodes, one_node = state_dict(os.path.join(node0, "iter_8.pth")), state_dict(os.path.join(stage1_dist, "iter_8.pth"))
    assert two_nodes.keys() == one_node.keys()
    for key, value in one_node.items():
        assert torch.equal(two_nodes[key], value), f"{key} differs between the 2-node and the 1-node run"


@pytest.fixture(scope="module")
def two_scene_infos(e2e_env, tmp_path_factory) -> Dict[str, str]:
    """Info pkls: each scene alone (first and second in time) and both together (16 frames, 2 scenes)."""
    folder, infos = tmp_path_factory.mktemp("two_scene_infos"), {}
    for split in ("train", "val"):
        with open(os.path.join(e2e_env["SPARSEDRIVE_E2E_INFO_ROOT"], f"nuscenes_infos_{split}.pkl"), "rb") as f:
            infos[split] = pickle.load(f)
    first, second = sorted(infos.values(), key=lambda data: min(i["timestamp"] for i in data["infos"]))
    assert len(first["infos"]) == len(second["infos"]) == 8, "each rank's block must be one whole scene"
    both = dict(infos=first["infos"] + second["infos"], metadata=first["metadata"])
    paths = {}
    for name, data in (("first", first), ("second", second), ("both", both)):
        paths[name] = str(folder / f"{name}.pkl")
        with open(paths[name], "wb") as f:
            pickle.dump(data, f)
    return paths


def cli_args(work_dir: str, ann_file: str) -> List[str]:
    return ["--work-dir", work_dir, "--out", os.path.join(work_dir, "out.pkl"),
            "--cfg-options", f"data.test.ann_file={ann_file}"]


def load(path: str):
    with open(path, "rb") as f:
        return pickle.load(f)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def scene_by_scene(e2e_env, two_node_train, two_scene_infos, tmp_path_factory):
    """Single-process results of each scene on its own, concatenated in dataset (time) order."""
    checkpoint = os.path.join(two_node_train[0], "iter_8.pth")
    results = []
    for scene in ("first", "second"):
        work = str(tmp_path_factory.mktemp(f"test_{scene}"))
        run([sys.executable, "tools/test.py", CONFIG1, checkpoint, *cli_args(work, two_scene_infos[scene])], e2e_env)
        results.extend(load(os.path.join(work, "out.pkl")))
    return results


def test_two_nodes_test_with_results_gathered_in_dataset_order(e2e_env, two_node_train, two_scene_infos,
                                                                scene_by_scene, tmp_path):
    checkpoint = os.path.join(two_node_train[0], "iter_8.pth")
    work_dirs = [str(tmp_path / f"node{rank}") for rank in range(2)]
    log_dir = str(tmp_path / "logs")
    finish(start_nodes([["bash", "tools/dist_test.sh", CONFIG1, checkpoint, "1",
                         *cli_args(work, two_scene_infos["both"])] for work in work_dirs], e2e_env, log_dir), log_dir)
    assert not os.path.exists(os.path.join(work_dirs[1], "out.pkl")), "only rank 0 writes the results"
    # rank r runs scene r from a fresh temporal state, as each single-process run did
    assert_same_results(load(os.path.join(work_dirs[0], "out.pkl")), scene_by_scene)


def test_slurm_tasks_test_with_results_gathered_in_dataset_order(e2e_env, two_node_train, two_scene_infos,
                                                                 scene_by_scene, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && echo 127.0.0.1\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    env = dict(e2e_env, PATH=f"{bin_dir}{os.pathsep}{e2e_env['PATH']}", GPUS="2", GPUS_PER_NODE="1",
               MASTER_PORT=str(free_port()))
    work = str(tmp_path / "slurm")
    run(["bash", "tools/slurm_test.sh", "cpu", "sd-test", CONFIG1, os.path.join(two_node_train[0], "iter_8.pth"),
         *cli_args(work, two_scene_infos["both"])], env)
    assert_same_results(load(os.path.join(work, "out.pkl")), scene_by_scene)


def marked_processes(marker: str) -> Dict[int, str]:
    """pid -> command line of the live processes whose environment holds ``marker``."""
    found = {}
    for environ in glob.glob("/proc/[0-9]*/environ"):
        pid = int(environ.split("/")[2])
        try:
            with open(environ, "rb") as f:
                if marker.encode() not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[pid] = f.read().replace(b"\0", b" ").decode()
        except OSError:  # ended meanwhile
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_node_takes_its_worker_along_and_stops_the_other_node(e2e_env, tmp_path):
    markers = [f"SD_MULTINODE_TEST={uuid.uuid4().hex}" for _ in range(2)]
    work_dirs = [str(tmp_path / f"node{rank}") for rank in range(2)]
    env = dict(e2e_env, SPARSEDRIVE_BATCH_SIZE="2", SPARSEDRIVE_NUM_GPUS="2")
    args = ["--deterministic", "--no-validate", "--cfg-options", "runner.max_iters=500"]
    commands = [["env", markers[rank], "bash", "tools/dist_train.sh", CONFIG1, "1", "--work-dir", work_dirs[rank],
                 *args] for rank in range(2)]
    log_dir = str(tmp_path / "logs")
    nodes = start_nodes(commands, env, log_dir)
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while not any('"mode": "train"' in read(p) for p in glob.glob(os.path.join(work_dirs[0], "*.log.json"))):
            if time.time() > deadline or any(n.poll() is not None for n in nodes):
                outputs = node_outputs(nodes, log_dir)
                raise AssertionError("training did not start:\n" + "\n".join(f"--- node {i}\n{o[-3000:]}"
                                                                               for i, o in enumerate(outputs)))
            time.sleep(1)
        workers = {pid: cmd for pid, cmd in marked_processes(markers[1]).items() if "tools/train.py" in cmd
                   and "torch.distributed.run" not in cmd}
        assert len(workers) == 1, f"expected node 1's one worker, found {workers}"
        killed_at = time.time()
        os.killpg(nodes[1].pid, signal.SIGKILL)  # the launch script's process group: torchrun, not the worker
        while marked_processes(markers[1]) and time.time() < killed_at + 15:
            time.sleep(0.2)
        assert not marked_processes(markers[1]), "node 1's worker kept running after its launcher was killed"
        nodes[0].wait(timeout=120)
        stopped_after = time.time() - killed_at
    finally:
        output = node_outputs(nodes, log_dir)[0]
    assert nodes[0].returncode != 0, "node 0 must fail when node 1 is gone"
    assert stopped_after < 90, f"node 0 needed {stopped_after:.0f} s to stop"
    assert "by peer" in output, f"node 0 must say that its peer is gone:\n{output[-3000:]}"
