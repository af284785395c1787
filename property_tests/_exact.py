"""Exact and high-precision helpers shared by the property tests (no setadam_ref arithmetic).

Float64 inputs are converted exactly (``fractions.Fraction`` or ``mpmath.mpf`` at >= 50 digits),
so these evaluate the *mathematical* formulas of docs/src/theory/invariants.md on the very
numbers the reference saw.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np

U = 2.0**-53

#: Working precision of the independent high-precision evaluation (decimal digits).
DPS = 60


def gamma(n: float) -> float:
    """Higham's gamma_n = n u / (1 - n u)."""
    return n * U / (1.0 - n * U)


def cos2_exact(v: np.ndarray) -> Fraction:
    """c = (sum v)^2 / (d sum v^2) exactly; 1 for an all-zero or empty layer (the convention)."""
    x = [Fraction(float(a)) for a in np.ravel(v)]
    d = len(x)
    s2 = sum(a * a for a in x)
    if d == 0 or s2 == 0:
        return Fraction(1)
    s1 = sum(x)
    return s1 * s1 / (d * s2)


def mp(x: float) -> mpmath.mpf:
    return mpmath.mpf(float(x))


def cos2_mp(v: list[mpmath.mpf]) -> mpmath.mpf:
    d = len(v)
    s2 = mpmath.fsum(a * a for a in v)
    if d == 0 or s2 == 0:
        return mpmath.mpf(1)
    s1 = mpmath.fsum(v)
    return s1 * s1 / (d * s2)


def rel_err(approx: float, exact: mpmath.mpf | Fraction) -> float:
    """|approx - exact| / |exact| (0 when both are 0; inf when only exact is 0)."""
    if isinstance(exact, Fraction):
        diff = abs(Fraction(float(approx)) - exact)
        if exact == 0:
            return 0.0 if diff == 0 else float("inf")
        return float(diff / abs(exact))
    diff = abs(mp(approx) - exact)
    if exact == 0:
        return 0.0 if diff == 0 else float("inf")
    return float(diff / abs(exact))
