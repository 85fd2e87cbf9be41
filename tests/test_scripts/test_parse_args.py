"""test/parse_args.sh: positional and --key=value arguments, defaults, and one-line errors."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse(*args):
    script = (
        "batch_node_size_stage1=64; batch_node_size_stage2=48; num_npu=8; "
        f"source {ROOT}/test/parse_args.sh; parse_args \"$@\" && "
        "echo \"RESULT $batch_node_size_stage1 $batch_node_size_stage2 $num_npu\""
    )
    proc = subprocess.run(["bash", "-c", script, "parse", *args], capture_output=True, text=True)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    return proc.returncode, (result[0].split()[1:] if result else None), proc.stderr


def test_defaults():
    assert parse()[:2] == (0, ["64", "48", "8"])


def test_positional_in_order():
    assert parse("16", "8")[:2] == (0, ["16", "8", "8"])


def test_keywords_win_and_accept_hyphens():
    rc, values, _ = parse("16", "16", "4", "--num-npu=2", "--batch_node_size_stage2=6")
    assert (rc, values) == (0, ["16", "6", "2"]), "keywords override positionals; '-' equals '_'"


@pytest.mark.parametrize(
    "args,message",
    [
        (("--bogus=1",), "unknown argument '--bogus'"),
        (("abc",), "must be a positive integer"),
        (("--num_npu=",), "num_npu is empty"),
        (("10", "48", "8"), "does not divide evenly"),
        (("1", "2", "3", "4"), "too many positional arguments"),
    ],
)
def test_bad_arguments_fail_with_one_clear_line(args, message):
    rc, values, err = parse(*args)
    assert rc == 1 and values is None, f"{args} must be refused"
    assert err.splitlines()[0].startswith("error: ") and message in err.splitlines()[0]
