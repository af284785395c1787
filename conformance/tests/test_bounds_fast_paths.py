"""The tolerance model's fast paths change no bound: bitwise equal to the bounds before them.

The fast paths (issue 15: long horizons) compute scalar relative errors with Python floats, cache
the per-format and per-layer-size constants of the statistics bounds, and skip array work where
no value can underflow. They are the same float64 operations in the same order, so every bound
must be equal to the bit: the snapshot (``bounds_snapshot``) holds the digests of the bounds the
commit before them computed, over float64, float32 and bfloat16 with float32 state, SET-Adam and
Adam (amsgrad both conventions, weight decay both modes, tf's epsilon) and param groups.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conformance.formats import fmt
from conformance.tolerance.lemmas import rel_product, under

from .bounds_snapshot import snapshot

STORED = Path(__file__).parent / "data" / "bounds_snapshot.json"


def test_bounds_equal_the_snapshot_bitwise() -> None:
    want = json.loads(STORED.read_text())
    got = snapshot()
    assert got.keys() == want.keys()
    moved = sorted(k for k in want if got[k] != want[k])
    assert not moved, f"bounds changed: {moved[:10]}"


_SCALARS = [
    ([2.0**-24, 2.0**-24, 3e-8], []),
    ([1e-3, 0.0, 2.0**-53], [2.0**-11, 0.5]),
    ([math.inf, 1e-3], [0.25]),
    ([math.nan, 1e-3], []),
    ([1e-3], [1.0]),  # a divisor's relative error of 1: no bound
    ([1e-3], [1.5]),
    ([1e300, 1e300], [math.nan]),
]


@pytest.mark.parametrize(("rels", "inv"), _SCALARS)
def test_scalar_rel_product_is_the_array_one(rels: list[float], inv: list[float]) -> None:
    """The Python-float path against the same values as 0-d arrays (the array path)."""
    fast = rel_product(list(rels), list(inv))
    with np.errstate(over="ignore"):  # 1e300 squared: inf on both paths
        slow = rel_product([np.asarray(r) for r in rels], [np.asarray(s) for s in inv])
    assert np.asarray(fast).tobytes() == np.asarray(slow).tobytes()


def test_under_fast_path_shape_and_values() -> None:
    f = fmt("float32")
    x = np.array([1.0, -2.0, 3.0])
    assert under(x, f, 2.0).shape == (3,)
    assert under(x, f, np.ones((2, 3))).shape == (2, 3)  # amp broadcasts
    sub = np.array([1.0, f.tiny / 4, 0.0])
    e = under(sub, f, 1.0)
    assert e[0] == 0.0 and e[1] > 0.0 and e[2] > 0.0  # the excess where a value is subnormal
