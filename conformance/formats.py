"""Floating-point formats the harness knows: unit roundoff, range, rounding and ulps in numpy.

Everything is computed on float64 numpy arrays so that no framework is needed: ``round_to`` returns
float64 arrays whose values are exactly representable in the target format, ``ulp`` the spacing of
the target format at a value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Format:
    """An IEEE-style binary format with ``p`` significand bits (hidden bit included)."""

    name: str
    p: int  # precision in bits, hidden bit included
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number

    @property
    def u(self) -> float:
        """Unit roundoff 2^-p: |fl(x) - x| <= u |x| for x in the normal range."""
        return float(2.0 ** (-self.p))

    @property
    def eta(self) -> float:
        """Half the subnormal spacing: the absolute rounding error bound below the normal range."""
        return float(2.0 ** (self.emin - self.p))

    @property
    def tiny(self) -> float:
        """Smallest positive normal number."""
        return float(2.0**self.emin)

    @property
    def max(self) -> float:
        """Largest finite number."""
        return float((2.0 - 2.0 ** (1 - self.p)) * 2.0**self.emax)

    @property
    def acc(self) -> Format:
        """Format layer reductions are assumed to accumulate in (float32 for half formats)."""
        return FORMATS["float32"] if self.p < 24 else self


FORMATS: dict[str, Format] = {
    "float64": Format("float64", 53, -1022, 1023),
    "float32": Format("float32", 24, -126, 127),
    "bfloat16": Format("bfloat16", 8, -126, 127),
    "float16": Format("float16", 11, -14, 15),
}


def fmt(dtype: str) -> Format:
    """The :class:`Format` of a dtype name; ``ValueError`` for an unknown name."""
    try:
        return FORMATS[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(FORMATS)}") from None


def _round_bf16(x: np.ndarray) -> np.ndarray:
    f = np.asarray(x, dtype=np.float64).astype(np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    # round to nearest even on the upper 16 bits; NaN kept NaN
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(np.float32).astype(np.float64)
    return np.where(np.isnan(f), np.nan, out)


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to ``dtype`` (round to nearest even); return them as float64."""
    a = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == "float64":
            return np.array(a, dtype=np.float64, copy=True)
        if dtype == "float32":
            return a.astype(np.float32).astype(np.float64)
        if dtype == "float16":
            return a.astype(np.float16).astype(np.float64)
        if dtype == "bfloat16":
            return _round_bf16(a)
    raise ValueError(f"unknown dtype {dtype!r}")


def representable(x: np.ndarray, dtype: str) -> bool:
    """True when every finite value of ``x`` is exactly representable in ``dtype``."""
    a = np.asarray(x, dtype=np.float64)
    r = round_to(a, dtype)
    fin = np.isfinite(a)
    return bool(np.array_equal(a[fin], r[fin]))


def ulp(x: np.ndarray, dtype: str) -> np.ndarray:
    """Spacing of ``dtype`` at |x| (the subnormal spacing below the normal range)."""
    f = fmt(dtype)
    a = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        _, e = np.frexp(np.where(np.isfinite(a), a, 1.0))
    expo = np.where(a > 0, np.maximum(e.astype(np.int64) - 1, f.emin), f.emin)
    return np.ldexp(1.0, (expo - f.p + 1).astype(np.int32))


def gamma(n: float, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u); ``inf`` when n u >= 1 (no bound)."""
    nu = n * u
    return nu / (1.0 - nu) if nu < 1.0 else float("inf")
