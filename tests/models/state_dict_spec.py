"""Compare a built model's state dict with upstream's released key/shape list (shared by the stage-1/2 tests)."""
import json
from pathlib import Path

from torch import nn


def assert_state_dict_matches_spec(model: nn.Module, spec: Path, num_params: int) -> None:
    """Keys, shapes and the total parameter count of ``model`` equal those in ``spec`` ({key: shape} JSON)."""
    expected = {k: list(v) for k, v in json.loads(spec.read_text()).items()}
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    assert not missing, f"{len(missing)} upstream keys missing, e.g. {missing[:10]}"
    assert not unexpected, f"{len(unexpected)} keys upstream does not have, e.g. {unexpected[:10]}"
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong, f"{len(wrong)} shape mismatches (got, upstream), e.g. {dict(list(wrong.items())[:10])}"
    total = sum(p.numel() for p in model.parameters())
    assert total == num_params, f"parameter count {total:,} != upstream's {num_params:,}"
