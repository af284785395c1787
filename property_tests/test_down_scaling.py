"""Down-scaling (S): properties of c_l = cos^2(v_l, 1_l) and of vs_l = c_l v_l.

Every property is proved in docs/src/theory/invariants.md (section named in each docstring);
the float64 accuracy of c used as a tolerance is derived in docs/src/numerics/reference-error.md.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from property_tests import strategies as S
from property_tests._exact import U, cos2_exact, gamma
from setadam_ref import stages


def _c_tol(d: int) -> float:
    """Relative float64 error bound of the reference's c for a layer of d entries."""
    return gamma(3 * d + 4)


@given(v=S.v_layers(max_size=200))
@example(v=np.array([5e-324, 1e300]))  # extreme spread: c = 1/d up to rounding (clamped)
@example(v=np.array([1.0, math.nextafter(1.0, 2.0)]))  # exact c < 1 but rounds to 1
def test_cos2_bounds(v: np.ndarray) -> None:
    """fl(1/d) <= c <= 1 for every layer: the reference clamps rounding back into [fl(1/d), 1]
    (the exact 1/d <= c holds for the exact c; the float64 c can be fl(1/d) < 1/d, see
    ``test_cos2_lower_clamp_is_the_float64_one_over_d``).

    Proof: docs/src/theory/invariants.md#cos2-bounds
    """
    d = v.size
    c = stages.cos2(v)
    assert 1.0 / d <= c <= 1.0  # 1.0 / d is fl(1/d)


@given(d=st.integers(1, 64), index=st.integers(0, 63))
@example(d=3, index=0)  # issue 16: v = e1, d = 3 gives c = fl(1/3) < 1/3
@example(d=6, index=5)
@example(d=7, index=2)
def test_cos2_lower_clamp_is_the_float64_one_over_d(d: int, index: int) -> None:
    """For one non-zero entry the reference returns c = fl(1/d) exactly, which is below the exact
    1/d whenever fl(1/d) rounds down (d = 3, 6, 7, ...): "1/d <= c exactly" is false in float64;
    fl(1/d) <= c is what holds.

    Proof: docs/src/theory/invariants.md#cos2-bounds
    """
    v = np.zeros(d)
    v[index % d] = 1.0
    c = stages.cos2(v)
    assert c == 1.0 / d
    assert (Fraction(c) < Fraction(1, d)) == (Fraction(1.0 / d) < Fraction(1, d))
    if d in (3, 6, 7):
        assert Fraction(c) < Fraction(1, d)


@given(v=S.v_layers(max_size=200, nonzero=True))
@example(v=np.array([1.0, 2.0, 3.0]))  # c = 36/42 = 6/7
def test_cos2_matches_exact_value(v: np.ndarray) -> None:
    """The reference's c equals (sum v)^2/(d sum v^2) = 1/(1 + CV(v)^2) within gamma_{3d+4}.

    Proof: docs/src/theory/invariants.md#cos2-identity and
    docs/src/numerics/reference-error.md#per-step-bounds
    """
    d = v.size
    exact = cos2_exact(v)
    x = [Fraction(float(a)) for a in v]
    mean = sum(x) / d
    cv2 = sum((a - mean) ** 2 for a in x) / (d * mean * mean)
    assert exact == 1 / (1 + cv2)  # the identity, in exact arithmetic
    c = stages.cos2(v)
    assert abs(Fraction(c) - exact) <= Fraction(_c_tol(d)) * exact + Fraction(d) * Fraction(
        2.0**-1074
    )


@given(
    n=st.integers(1, 10_000),
    value=st.floats(5e-324, 1e308),
)
@example(n=10_000, value=5e-324)  # constant subnormal layer
def test_cos2_is_one_for_constant_layer(n: int, value: float) -> None:
    """c = 1 exactly when v is constant and non-zero.

    Proof: docs/src/theory/invariants.md#cos2-constant
    """
    assert stages.cos2(np.full(n, value)) == 1.0


@given(v=S.v_layers(min_size=2, max_size=200, nonzero=True))
def test_cos2_below_one_for_nonconstant_layer(v: np.ndarray) -> None:
    """For a non-constant layer the exact c is < 1, with 1 - c = CV^2/(1 + CV^2); the float c
    is < 1 whenever 1 - c exceeds the rounding bound.

    Proof: docs/src/theory/invariants.md#cos2-constant
    """
    exact = cos2_exact(v)
    c = stages.cos2(v)
    if v.min() == v.max():
        assert exact == 1 and c == 1.0
        return
    assert exact < 1
    if 1 - exact > Fraction(2 * _c_tol(v.size)):
        assert c < 1.0


@given(
    n=st.integers(1, 10_000),
    index=st.integers(0, 10_000),
    value=st.floats(5e-324, 1e308),
)
@example(n=3, index=1, value=1.0)
def test_cos2_one_nonzero_entry(n: int, index: int, value: float) -> None:
    """c = 1/d when exactly one entry is non-zero (within one rounding; clamped at 1/d).

    Proof: docs/src/theory/invariants.md#cos2-one-nonzero
    """
    v = np.zeros(n)
    v[index % n] = value
    c = stages.cos2(v)
    assert 1.0 / n <= c <= (1.0 / n) * (1 + 4 * U)


@given(v=S.v_layers(min_size=2, max_size=64, nonzero=True))
def test_cos2_above_one_over_d_iff_two_nonzero(v: np.ndarray) -> None:
    """c - 1/d = 2 sum_{i<j} v_i v_j / (d sum v^2) exactly: zero iff at most one entry is non-zero.

    Proof: docs/src/theory/invariants.md#cos2-one-nonzero
    """
    d = v.size
    x = [Fraction(float(a)) for a in v]
    s2 = sum(a * a for a in x)
    cross = sum(x) ** 2 - s2
    exact = cos2_exact(v)
    assert exact - Fraction(1, d) == cross / (d * s2)
    assert (cross == 0) == (np.count_nonzero(v) == 1)


@given(
    v=S.v_layers(max_size=200, min_exp=-250, max_exp=250),
    k=st.integers(-150, 150),
    data=st.data(),
)
def test_cos2_invariant_under_scaling_and_permutation(
    v: np.ndarray, k: int, data: st.DataObject
) -> None:
    """c(s v) = c(v) for s > 0 and c(P v) = c(v) for a permutation P. Scaling by a power of two
    is exact in the reference (its sums are scaled by the exponent of max v), so bit-equal;
    another positive factor or a permutation agrees within twice the rounding bound.

    Proof: docs/src/theory/invariants.md#cos2-invariance
    """
    c = stages.cos2(v)
    assert stages.cos2(v * 2.0**k) == c
    s = data.draw(st.floats(1e-20, 1e20), label="scale")
    perm = data.draw(st.permutations(range(v.size)), label="permutation")
    tol = 2 * _c_tol(v.size) + 1e-300
    scaled = v * s
    if np.all((scaled == 0) == (v == 0)) and np.all(np.isfinite(scaled)):
        # (if scaling underflows an entry to 0, s v is no longer the scaled layer)
        assert math.isclose(stages.cos2(scaled), c, rel_tol=tol + 4 * U)
    assert math.isclose(stages.cos2(v[list(perm)]), c, rel_tol=tol)


@given(v=S.v_layers(max_size=500))
def test_down_scaled_not_above_v(v: np.ndarray) -> None:
    """vs = c v <= v entrywise (c <= 1; rounding is monotone), and down_scale returns (c, c*v).

    Proof: docs/src/theory/invariants.md#down-scaled-below
    """
    c, vs = stages.down_scale(v)
    assert c == stages.cos2(v)
    assert np.array_equal(vs, c * v)
    assert np.all(vs <= v)
    assert np.all(vs >= v / v.size * (1 - 2 * U))


@given(n=st.integers(0, 10_000))
def test_zero_and_empty_layer_convention(n: int) -> None:
    """An all-zero or empty layer has no angle; the reference reports c = 1.0 and vs = 0.

    Proof: docs/src/theory/invariants.md#zero-layer
    """
    v = np.zeros(n)
    c, vs = stages.down_scale(v)
    assert c == 1.0
    assert vs.shape == (n,)
    assert not np.any(vs)
