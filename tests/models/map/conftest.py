"""Map test fixtures: GT polyline orderings as the VectorizeMap pipeline builds them (permute=True)."""
from typing import Callable

import pytest
import torch

PAD_VALUE = 1e5


def _open_orderings(line: torch.Tensor, num_orderings: int = 38) -> torch.Tensor:
    """[P, 2] open polyline -> [num_orderings, P, 2]: original, reversed, then padding rows."""
    padding = line.new_full((num_orderings - 2,) + tuple(line.shape), PAD_VALUE)
    return torch.cat([line[None], line.flip(0)[None], padding])


def _closed_orderings(ring: torch.Tensor) -> torch.Tensor:
    """[P - 1, 2] distinct points of a closed polyline -> [2 * (P - 1), P, 2].

    Rows 0..P-2 are the cyclic shifts of the ring, rows P-1.. those of its reversal; each row repeats
    its first point at the end.
    """
    rows = []
    for base in (ring, ring.flip(0)):
        for shift in range(ring.shape[0]):
            rolled = torch.roll(base, -shift, dims=0)
            rows.append(torch.cat([rolled, rolled[:1]]))
    return torch.stack(rows)


@pytest.fixture
def open_orderings() -> Callable[..., torch.Tensor]:
    return _open_orderings


@pytest.fixture
def closed_orderings() -> Callable[[torch.Tensor], torch.Tensor]:
    return _closed_orderings
