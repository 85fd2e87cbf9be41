"""apis/dist.py and the result gathering of apis/test.py: Slurm variables, the process-group timeout, dying with
the launcher, and results collected on rank 0 in rank order, each checked in real gloo process groups."""
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

import pytest
import torch

from projects.mmdet3d_plugin.apis.dist import DEFAULT_TIMEOUT_S, dist_timeout_s, init_distributed, slurm_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RANK_TIMEOUT_S = 300  # generous: CI machines may be shared
SLURM = dict(SLURM_PROCID="5", SLURM_NTASKS="16", SLURM_LOCALID="1", SLURM_NODELIST="sd-node[07-08]")


# Ranks import apis/dist.py and apis/test.py under a stub of the plugin package: its __init__ registers every
# model through mmdet, which would triple each rank's start-up.
LIGHT_IMPORT = f"""
import sys, types
sys.path.insert(0, {ROOT!r})
import projects
_plugin = types.ModuleType("projects.mmdet3d_plugin")
_plugin.__path__ = [{os.path.join(ROOT, "projects", "mmdet3d_plugin")!r}]
sys.modules["projects.mmdet3d_plugin"] = _plugin
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_scontrol(tmp_path) -> Dict[str, str]:
    """A ``scontrol`` on PATH that expands any node list to 127.0.0.1 and sd-node08 and logs its arguments."""
    log = tmp_path / "scontrol.log"
    script = tmp_path / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\nprintf "127.0.0.1\\nsd-node08\\n"\n')
    script.chmod(0o755)
    return dict(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}", log=str(log))


def clean_env(**extra: str) -> Dict[str, str]:
    """This environment without launcher variables, on the CPU backend, plus ``extra``."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SPARSEDRIVE_DIST_TIMEOUT_S",
            "TORCHELASTIC_RUN_ID")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    env.update(SPARSEDRIVE_DEVICE="cpu", OMP_NUM_THREADS="1", PYTHONPATH=ROOT, **extra)
    return env


def run_ranks(code: str, envs: List[Dict[str, str]], args: Optional[List[List[str]]] = None, first_only: bool = False):
    """Start one process per environment running ``code``; (returncode, stdout, stderr) per rank.

    ``first_only``: rank 0's result alone, the others killed once it ends."""
    procs = [subprocess.Popen([sys.executable, "-c", LIGHT_IMPORT + code, *(args[i] if args else [])], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, env in enumerate(envs)]
    results = []
    for proc in procs[:1] if first_only else procs:
        try:
            out, err = proc.communicate(timeout=RANK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, out, err))
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return results


def torchrun_envs(world_size: int, **extra: str) -> List[Dict[str, str]]:
    """The variables torchrun gives each rank, on one machine."""
    port = str(free_port())
    return [clean_env(RANK=str(r), WORLD_SIZE=str(world_size), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=port, **extra) for r in range(world_size)]


# ---- the timeout -------------------------------------------------------------------------------------------


def test_timeout_defaults_to_half_an_hour_and_reads_the_environment():
    assert dist_timeout_s({}) == DEFAULT_TIMEOUT_S == 1800
    assert dist_timeout_s({"SPARSEDRIVE_DIST_TIMEOUT_S": " 90 "}) == 90


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(value):
    with pytest.raises(ValueError, match="SPARSEDRIVE_DIST_TIMEOUT_S"):
        dist_timeout_s({"SPARSEDRIVE_DIST_TIMEOUT_S": value})


WAIT_FOR_DEAD_PEER = """
import os, sys, time, torch, torch.distributed as dist
from projects.mmdet3d_plugin.apis.dist import init_distributed
init_distributed("pytorch")
if dist.get_rank() == 1:
    time.sleep(float(sys.argv[1]))  # stuck: never joins the all-reduce
else:
    start = time.time()
    try:
        dist.all_reduce(torch.ones(2))
    except RuntimeError as exc:
        print("failed after %.1f s: %s" % (time.time() - start, str(exc).splitlines()[0]), flush=True)
        os._exit(0)  # tearing down a group with a timed-out op may abort
"""


def test_a_rank_waiting_for_a_stuck_peer_stops_after_the_timeout():
    # rank 1 stays stuck for 60 s: without the timeout rank 0 would wait until rank 1 is killed
    (rc, out, err), = run_ranks(WAIT_FOR_DEAD_PEER, torchrun_envs(2, SPARSEDRIVE_DIST_TIMEOUT_S="3"), [["0"], ["60"]],
                                first_only=True)
    assert rc == 0 and out.startswith("failed after"), f"rank 0 must give up:\n{out}{err[-2000:]}"
    waited = float(out.split()[2])
    assert 2.5 <= waited <= 15, f"rank 0 waited {waited} s with SPARSEDRIVE_DIST_TIMEOUT_S=3"


LEAVE_TOGETHER = """
import json, sys, time, torch, torch.distributed as dist
from projects.mmdet3d_plugin.apis.dist import init_distributed, leave_distributed
init_distributed("pytorch")
rank = dist.get_rank()
total = torch.ones(1)
dist.all_reduce(total)
if rank == 1:
    time.sleep(2.0)  # the last rank to finish: the others must wait for it
start = time.time()
leave_distributed()
waited = time.time() - start
if rank == 0:
    time.sleep(2.0)  # rank 0 goes on alone (tools/test.py evaluates) while rank 1 has exited
print(json.dumps(dict(rank=rank, total=total.item(), waited=waited, still_in_group=dist.is_initialized())))
"""


def test_ranks_leave_the_group_together_and_then_exit_cleanly():
    results = run_ranks(LEAVE_TOGETHER, torchrun_envs(2))
    for rank, (rc, out, err) in enumerate(results):
        assert rc == 0, f"rank {rank} exited {rc}:\n{err[-2000:]}"
        report = json.loads(out.splitlines()[-1])
        assert report["total"] == 2.0 and not report["still_in_group"], report
    assert json.loads(results[0][1].splitlines()[-1])["waited"] >= 1.5, "rank 0 must wait at the barrier for rank 1"


# ---- Slurm -------------------------------------------------------------------------------------------------


def test_slurm_variables_become_torchs(fake_scontrol, monkeypatch):
    monkeypatch.setenv("PATH", fake_scontrol["PATH"])
    env = slurm_env(SLURM)
    assert env == dict(RANK="5", WORLD_SIZE="16", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    with open(fake_scontrol["log"]) as f:
        assert f.read().split() == ["show", "hostnames", "sd-node[07-08]"], "the master is the node list's first host"


def test_slurm_master_addr_and_port_from_the_environment_win(tmp_path):
    env = slurm_env(dict(SLURM, MASTER_ADDR="10.0.0.9", MASTER_PORT="31000"), scontrol=str(tmp_path / "absent"))
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.0.0.9", "31000")


def test_missing_slurm_variables_are_named():
    with pytest.raises(RuntimeError, match=r"\$SLURM_LOCALID, \$SLURM_NODELIST; start through tools/slurm_train.sh"):
        slurm_env(dict(SLURM_PROCID="0", SLURM_NTASKS="1"))


def test_without_scontrol_the_error_says_to_set_master_addr(tmp_path):
    with pytest.raises(RuntimeError, match="set MASTER_ADDR"):
        slurm_env(SLURM, scontrol=str(tmp_path / "absent"))


def test_an_unknown_launcher_is_refused():
    with pytest.raises(ValueError, match="'mpi' is not supported; use one of none, pytorch, slurm"):
        init_distributed("mpi")


SLURM_TASK = """
import json, os, torch.distributed as dist
from projects.mmdet3d_plugin.apis.dist import init_distributed, leave_distributed
init_distributed("slurm")
seen = [None] * dist.get_world_size()
dist.all_gather_object(seen, [dist.get_rank(), os.environ["LOCAL_RANK"], os.environ["MASTER_ADDR"]])
print(json.dumps(dict(world=dist.get_world_size(), backend=dist.get_backend(), seen=seen)), flush=True)
leave_distributed()
"""


@pytest.mark.parametrize("world_size", [1, 2])
def test_slurm_tasks_form_a_gloo_group(fake_scontrol, world_size):
    port = str(free_port())
    envs = [clean_env(PATH=fake_scontrol["PATH"], SLURM_PROCID=str(r), SLURM_NTASKS=str(world_size),
                      SLURM_LOCALID=str(r), SLURM_NODELIST="sd-node[07-08]", MASTER_PORT=port)
            for r in range(world_size)]
    for rc, out, err in run_ranks(SLURM_TASK, envs):
        assert rc == 0, err[-3000:]
        report = json.loads(out.splitlines()[-1])
        assert report["world"] == world_size and report["backend"] == "gloo"
        assert report["seen"] == [[r, str(r), "127.0.0.1"] for r in range(world_size)], report


# ---- dying with the launcher -------------------------------------------------------------------------------

PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = LIGHT_IMPORT + """
import time
if {call}:
    from projects.mmdet3d_plugin.apis.dist import exit_with_parent
    exit_with_parent()
open({ready!r}, "w").close()
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("call", [True, False])
def test_exit_with_parent_ends_the_worker_when_its_launcher_is_killed(tmp_path, call):
    ready = tmp_path / "ready"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD.format(call=call, ready=str(ready))],
                              stdout=subprocess.PIPE, text=True, env=clean_env())
    child = int(parent.stdout.readline())
    try:
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert ready.exists(), "the child did not start"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 5
        while alive(child) and time.time() < deadline:
            time.sleep(0.1)
        assert alive(child) != call, ("the worker must die with its launcher" if call else
                                      "control: without exit_with_parent the orphan lives on")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


# ---- gathering results -------------------------------------------------------------------------------------

GATHER = """
import os, pickle, sys, torch
from projects.mmdet3d_plugin.apis.dist import init_distributed
from projects.mmdet3d_plugin.apis.test import collect_results
init_distributed("pytorch")
rank = int(os.environ["RANK"])
parts = [[dict(i=0, t=torch.arange(3.0)), dict(i=1, t=torch.zeros(2, 2))],
         [dict(i=2, t=torch.ones(1)), dict(i=3, big=torch.arange(1 << 20, dtype=torch.float32)), dict(i=4)],
         []]
shared, local = sys.argv[1], sys.argv[2] + str(rank)  # local: each "node" its own folder, as a node-local /tmp
out = dict(group=collect_results(parts[rank], 5), shared=collect_results(parts[rank], 5, shared),
           truncated=collect_results(parts[rank], 4))
try:
    out["local"] = collect_results(parts[rank], 5, local)
except FileNotFoundError as exc:
    out["local"] = str(exc)
with open(sys.argv[3] + str(rank), "wb") as f:
    pickle.dump(out, f)
"""


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> List[Dict[str, object]]:
    """What ranks 0, 1, 2 of a 3-process gloo group get from collect_results: through the process group
    (``group``, ``truncated`` to 4 results), a shared tmpdir (``shared``) and node-local tmpdirs (``local``)."""
    folder = tmp_path_factory.mktemp("gather")
    args = [str(folder / "shared"), str(folder / "local"), str(folder / "out")]
    for rc, _, err in run_ranks(GATHER, torchrun_envs(3), [args] * 3):
        assert rc == 0, err[-3000:]
    outs = []
    for rank in range(3):
        with open(folder / f"out{rank}", "rb") as f:
            outs.append(pickle.load(f))
    assert not os.path.exists(folder / "shared"), "the shared tmpdir is removed afterwards"
    return outs


@pytest.mark.parametrize("through", ["group", "shared"])
def test_rank_zero_gets_every_part_in_rank_order(gathered, through):
    rank0 = gathered[0][through]
    assert gathered[1][through] is None and gathered[2][through] is None, "only rank 0 returns the results"
    assert [r["i"] for r in rank0] == [0, 1, 2, 3, 4], "parts must follow rank order, nothing lost or repeated"
    assert torch.equal(rank0[0]["t"], torch.arange(3.0)) and torch.equal(rank0[1]["t"], torch.zeros(2, 2))
    assert torch.equal(rank0[3]["big"], torch.arange(1 << 20, dtype=torch.float32)), "a 4 MB part arrives intact"


def test_results_beyond_the_dataset_length_are_dropped(gathered):
    assert [r["i"] for r in gathered[0]["truncated"]] == [0, 1, 2, 3]


def test_a_tmpdir_that_the_nodes_do_not_share_is_named(gathered):
    message = gathered[0]["local"]
    assert isinstance(message, str) and "part_1.pkl of rank 1 is missing" in message and "shares" in message, message
