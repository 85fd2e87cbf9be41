"""tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh: the launcher command lines they build from their
arguments and the node variables, and one-line usage errors (exit 2) for missing or bad values.

The interpreter (``$PYTHON``) and ``srun`` are replaced by fakes that print their arguments, one per line.
"""
import os
import subprocess
from typing import Dict, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_VARS = ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "PORT", "RDZV_ENDPOINT", "RDZV_ID",
             "GPUS", "GPUS_PER_NODE", "CPUS_PER_TASK", "GRES", "SRUN_ARGS", "SPARSEDRIVE_RUN_DIR")
PRINT_ARGS = '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n'


@pytest.fixture
def fakes(tmp_path) -> Dict[str, str]:
    """Environment whose PYTHON and srun print their arguments (srun prints its own, then the command's)."""
    python = tmp_path / "python"
    python.write_text(PRINT_ARGS)
    (tmp_path / "srun").write_text(PRINT_ARGS)
    for path in (python, tmp_path / "srun"):
        path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in NODE_VARS}
    # python_env.sh skips its import check for an interpreter it already checked
    env.update(PYTHON=str(python), SPARSEDRIVE_PYTHON_CHECKED=str(python),
               PATH=f"{tmp_path}{os.pathsep}{env.get('PATH', '')}")
    return env


def launch(script: str, args: List[str], env: Dict[str, str], **node_vars: str) -> Tuple[int, List[str], str]:
    proc = subprocess.run(["bash", f"tools/{script}", *args], cwd=ROOT, env=dict(env, **node_vars),
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def torchrun(*flags: str) -> List[str]:
    return ["-m", "torch.distributed.run", *flags]


def test_train_defaults_keep_the_single_node_launch(fakes):
    rc, argv, err = launch("dist_train.sh", ["cfg.py", "2", "--seed", "1"], fakes)
    assert rc == 0, err
    assert argv == torchrun("--nnodes=1", "--node_rank=0", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                            "--master_port=28651") + [f"{ROOT}/tools/train.py", "cfg.py", "--launcher", "pytorch",
                                                      "--seed", "1"]


def test_port_still_picks_the_single_node_port_and_master_port_wins(fakes):
    assert "--master_port=30001" in launch("dist_train.sh", ["cfg.py", "1"], fakes, PORT="30001")[1]
    assert "--master_port=30002" in launch("dist_train.sh", ["cfg.py", "1"], fakes, PORT="30001",
                                           MASTER_PORT="30002")[1]
    assert "--master_port=29610" in launch("dist_test.sh", ["cfg.py", "ckpt.pth", "1"], fakes)[1]


def test_node_variables_reach_torchrun(fakes):
    rc, argv, err = launch("dist_train.sh", ["cfg.py", "8", "--no-validate"], fakes, NNODES="2", NODE_RANK="1",
                           MASTER_ADDR="10.1.2.3", MASTER_PORT="29500")
    assert rc == 0, err
    assert argv[:7] == torchrun("--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--master_addr=10.1.2.3",
                                "--master_port=29500")
    assert argv[7:] == [f"{ROOT}/tools/train.py", "cfg.py", "--launcher", "pytorch", "--no-validate"]


def test_rdzv_endpoint_selects_torchruns_c10d_rendezvous(fakes):
    rc, argv, err = launch("dist_test.sh", ["cfg.py", "ckpt.pth", "4", "--out", "r.pkl"], fakes, NNODES="3",
                           RDZV_ENDPOINT="head:29400", RDZV_ID="job7")
    assert rc == 0, err
    assert argv == torchrun("--nnodes=3", "--nproc_per_node=4", "--rdzv_backend=c10d", "--rdzv_endpoint=head:29400",
                            "--rdzv_id=job7") + [f"{ROOT}/tools/test.py", "cfg.py", "ckpt.pth", "--launcher", "pytorch",
                                                 "--out", "r.pkl"]


@pytest.mark.parametrize(
    "script,args,node_vars,message",
    [
        ("dist_train.sh", [], {}, "needs CONFIG and PROCS_PER_NODE"),
        ("dist_train.sh", ["cfg.py"], {}, "needs CONFIG and PROCS_PER_NODE"),
        ("dist_train.sh", ["cfg.py", "two"], {}, "PROCS_PER_NODE='two' is not a number"),
        ("dist_train.sh", ["cfg.py", "0"], {}, "PROCS_PER_NODE=0 must be at least 1"),
        ("dist_test.sh", ["cfg.py", "ckpt.pth"], {}, "needs CONFIG, CHECKPOINT and PROCS_PER_NODE"),
        ("dist_test.sh", ["cfg.py", "ckpt.pth", "-1"], {}, "PROCS_PER_NODE='-1' is not a number"),
        ("dist_train.sh", ["cfg.py", "1"], {"NNODES": "2", "NODE_RANK": "1"}, "NNODES=2 needs MASTER_ADDR"),
        ("dist_train.sh", ["cfg.py", "1"], {"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "h"},
         "NODE_RANK=2 must be below NNODES=2"),
        ("dist_train.sh", ["cfg.py", "1"], {"NNODES": "x"}, "NNODES='x' is not a number"),
        ("dist_train.sh", ["cfg.py", "1"], {"MASTER_PORT": "70000"}, "MASTER_PORT=70000 is not a port"),
        ("slurm_train.sh", ["part", "job"], {}, "needs PARTITION, JOB_NAME and CONFIG"),
        ("slurm_test.sh", ["part", "job", "cfg.py"], {}, "needs PARTITION, JOB_NAME, CONFIG and CHECKPOINT"),
        ("slurm_train.sh", ["part", "job", "cfg.py"], {"GPUS": "many"}, "GPUS='many' is not a number"),
    ],
)
def test_missing_or_bad_values_end_in_usage_and_one_error_line(fakes, script, args, node_vars, message):
    rc, argv, err = launch(script, args, fakes, **node_vars)
    lines = err.splitlines()
    assert rc == 2 and argv == [], f"{script} {args} {node_vars} must stop before launching (rc {rc})"
    assert len(lines) == 2 and lines[0].startswith("usage: ") and f"tools/{script}" in lines[0], err
    assert lines[1].startswith("error: ") and message in lines[1], err


@pytest.mark.parametrize("script", ["dist_train.sh", "dist_test.sh", "slurm_train.sh", "slurm_test.sh"])
def test_help_prints_the_usage_line(fakes, script):
    rc, argv, err = launch(script, ["--help"], fakes)
    assert (rc, err) == (0, "") and len(argv) == 1 and argv[0].startswith("usage: ") and script in argv[0]


def test_slurm_train_runs_one_task_per_device_through_srun(fakes):
    rc, argv, err = launch("slurm_train.sh", ["dev", "sd", "cfg.py", "--seed", "3"], fakes, GPUS="16",
                           GRES="gpu:8", SRUN_ARGS="--time=1:00:00 --exclusive")
    assert rc == 0, err
    assert argv == ["--partition=dev", "--job-name=sd", "--ntasks=16", "--ntasks-per-node=8", "--cpus-per-task=5",
                    "--kill-on-bad-exit=1", "--gres=gpu:8", "--time=1:00:00", "--exclusive", fakes["PYTHON"], "-u",
                    f"{ROOT}/tools/train.py", "cfg.py", "--launcher", "slurm", "--seed", "3"]


def test_slurm_test_defaults_to_fewer_tasks_per_node_than_eight_when_fewer_devices(fakes):
    rc, argv, err = launch("slurm_test.sh", ["dev", "sd", "cfg.py", "ckpt.pth", "--eval", "bbox"], fakes, GPUS="2")
    assert rc == 0, err
    assert argv == ["--partition=dev", "--job-name=sd", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=5",
                    "--kill-on-bad-exit=1", fakes["PYTHON"], "-u", f"{ROOT}/tools/test.py", "cfg.py", "ckpt.pth",
                    "--launcher", "slurm", "--eval", "bbox"]


def stages(tmp_path, fakes, args: List[str], **node_vars: str) -> Tuple[int, str, str]:
    """test/train_8p_full.sh with a PYTHON that logs its arguments and the batch / world size it was given."""
    python = tmp_path / "python"
    python.write_text(PRINT_ARGS + 'echo "batch=$SPARSEDRIVE_BATCH_SIZE world=$SPARSEDRIVE_NUM_GPUS"\n')
    run_dir = tmp_path / "run"
    proc = subprocess.run(["bash", "test/train_8p_full.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(fakes, SPARSEDRIVE_RUN_DIR=str(run_dir), **node_vars), timeout=60)
    log = run_dir / "stage1_train_8p_full.log"
    return proc.returncode, log.read_text() if log.exists() else "", proc.stderr


def test_train_stages_spread_the_global_batch_over_every_node(tmp_path, fakes):
    rc, log, err = stages(tmp_path, fakes, ["32", "16", "4"], NNODES="2", NODE_RANK="1", MASTER_ADDR="10.0.0.5",
                          MASTER_PORT="29555")
    # the fake trains nothing, so the stage stops at the missing checkpoint, after launching stage 1
    assert rc == 1 and "stage1" in err, err
    assert "batch=32 world=8" in log, f"the config must see the global batch and NNODES x cards processes:\n{log}"
    for flag in ("--nnodes=2", "--node_rank=1", "--nproc_per_node=4", "--master_addr=10.0.0.5",
                 "--master_port=29555"):
        assert flag in log.splitlines(), f"{flag} missing from the stage-1 launch:\n{log}"


@pytest.mark.parametrize(
    "args,node_vars,message",
    [
        (["32", "20", "4"], {"NNODES": "2", "MASTER_ADDR": "h"}, "batch_node_size_stage2=20 does not divide evenly "
                                                                 "over NNODES=2 x num_npu=4 = 8 processes"),
        (["32", "16", "4"], {"NNODES": "two"}, "NNODES='two' must be a positive integer"),
    ],
)
def test_train_stages_refuse_batches_that_do_not_divide_over_the_world(tmp_path, fakes, args, node_vars, message):
    rc, log, err = stages(tmp_path, fakes, args, **node_vars)
    assert rc == 2 and log == "", f"must stop before training (rc {rc})"
    assert err.splitlines()[-1] == f"error: {message}", err


def test_train_stages_need_a_shared_run_dir_on_several_nodes(fakes):
    proc = subprocess.run(["bash", "test/train_8p_full.sh", "32", "16", "4"], cwd=ROOT, capture_output=True,
                          text=True, env=dict(fakes, NNODES="2", MASTER_ADDR="h"), timeout=60)
    assert proc.returncode == 2 and "SPARSEDRIVE_RUN_DIR" in proc.stderr.splitlines()[-1], proc.stderr
