"""The stacked same-size fits decide every (entry, array) pair as the one-pair fit does."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.adapters import probe_fits
from conformance.adapters.probe_fits import TOL, SameSize, fit


def _arrays(rng: np.random.Generator) -> list[np.ndarray]:
    sizes = [0, 1, 3, 3, 3, 7, 7, 12]
    return [rng.choice([-1.0, 1.0], n) * rng.integers(32, 128, n) / 64.0 for n in sizes]


def _entries(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Entries an outside port could hold: multiples of one array (one with a coefficient
    ``a`` and an error just inside / just outside TOL on one coordinate), a shuffled copy, a
    non-finite one, a zero one."""
    out = []
    for y in arrays:
        if y.size == 0:
            continue
        out.append(0.1 * y)
        out.append(-3.0 * y)
        inside, outside = (0.1 * y).copy(), (0.1 * y).copy()
        inside[0] *= 1 + 0.9 * TOL
        outside[0] *= 1 + 2.2 * TOL
        out += [inside, outside, rng.permutation(y), np.zeros_like(y)]
        bad = y.copy()
        bad[-1] = np.nan
        out.append(bad)
    return out


@pytest.mark.parametrize("stack", [probe_fits.STACK, 4])  # stacked, and the per-pair fallback
def test_same_size_fits_are_the_pairwise_fits(stack: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_fits, "STACK", stack)
    rng = np.random.default_rng(5)
    arrays = _arrays(rng)
    same = SameSize(arrays)
    found = 0
    for x in _entries(arrays, rng):
        want = [(fit(x, y), i) for i, y in enumerate(arrays) if y.size == x.size and y.size > 0]
        want = [(a, i) for a, i in want if a is not None]
        got = same.fits(x)
        assert [i for _, i in got] == [i for _, i in want]
        np.testing.assert_allclose([a for a, _ in got], [a for a, _ in want], rtol=4e-16)
        found += len(got)
    assert found > 0  # some entries fit (the test is not vacuous)


def test_an_entry_just_outside_the_tolerance_fits_nothing() -> None:
    y = np.array([0.5, -1.25, 1.75])
    x = 0.1 * y
    x[1] *= 1 + 2.2 * TOL
    assert SameSize([y]).fits(x) == [] and fit(x, y) is None
    x[1] = 0.1 * y[1] * (1 + 0.9 * TOL)
    assert [i for _, i in SameSize([y]).fits(x)] == [0]
