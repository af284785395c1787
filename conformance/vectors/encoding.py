"""Encoding of float64 values and the two text formats of the golden vectors.

Every float64 in a vector set is written as a *canonical hexadecimal string*: Python's
``float.hex`` with the trailing zeros of the fraction removed (and the ``.`` with them when the
fraction is empty). Examples: ``1.0 -> "0x1p+0"``, ``3.0 -> "0x1.8p+1"``, ``-0.0 -> "-0x0p+0"``,
``0.001 -> "0x1.0624dd2f1a9fcp-10"``. Hex strings are exact by construction (no decimal
rounding in any parser), C99 ``strtod``/``printf("%a")`` read and write them, and Python reads
them with ``float.fromhex``. Non-finite values never occur in a vector.

Readers of *outputs* (what a port writes) accept hex and decimal alike (see :func:`parse_float`),
so a port may print ``%a``, ``%.17g`` or ``repr``.

The text formats are line-oriented: one record per line, tokens separated by blanks, ``#``
starts a comment line. See docs/src/guide/vectors.md for the full grammar.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

F64Array = npt.NDArray[np.float64]

_HEX_RE = re.compile(r"^-?0x[01](\.[0-9a-f]*[1-9a-f])?p[+-][0-9]+$")


def hex_float(x: float) -> str:
    """The canonical hexadecimal string of a finite float64."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x!r} cannot be written to a vector")
    h = x.hex()  # e.g. '-0x1.8000000000000p+1'
    mant, exp = h.split("p")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}p{exp}"


def is_canonical_hex(s: str) -> bool:
    """True when ``s`` is a canonical hex string (the only form the vector files use)."""
    return bool(_HEX_RE.match(s)) and hex_float(float.fromhex(s)) == s


_DECIMAL_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_HEX_TOKEN_RE = re.compile(r"[+-]?0x([0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(p[+-]?[0-9]+)?")


def parse_float(token: str) -> float:
    """Parse a hex (``0x1.8p+1``, as ``%a`` prints) or decimal (``3.0``, ``3e0``) float token.

    ``nan``/``inf`` are accepted (a port may produce them; the check then reports them).
    Raises ValueError on anything else: non-ASCII characters (``float`` would read Arabic-Indic
    digits), Python-only forms (``1_000``), and finite tokens that overflow float64
    (``0x1p+99999``, ``1e400``), which no float64 program prints.
    """
    t = token.strip()
    if not t:
        raise ValueError("empty number")
    if not t.isascii():
        raise ValueError(f"not a number (non-ASCII characters): {token[:40]!r}")
    low = t.lower()
    if low.lstrip("+-") in ("nan", "inf", "infinity"):
        return float(low)
    if _HEX_TOKEN_RE.fullmatch(low):
        try:
            return float.fromhex(low)
        except OverflowError:
            raise ValueError(f"{token[:40]!r} overflows float64") from None
    if not _DECIMAL_RE.fullmatch(t):
        raise ValueError(f"not a number: {token[:40]!r}")
    x = float(t)
    if math.isinf(x):
        raise ValueError(f"{token[:40]!r} overflows float64")
    return x


def encode_array(a: npt.ArrayLike) -> list[str]:
    """A float64 array (any shape) as a flat list of canonical hex strings in C order."""
    flat = np.ascontiguousarray(a, dtype=np.float64).reshape(-1)
    return [hex_float(float(x)) for x in flat]


def decode_array(values: Sequence[str], shape: Sequence[int]) -> F64Array:
    """Inverse of :func:`encode_array` (accepts any token :func:`parse_float` accepts)."""
    n = math.prod(shape)
    if len(values) != n:
        raise ValueError(f"expected {n} values for shape {tuple(shape)}, got {len(values)}")
    out = np.array([parse_float(str(v)) for v in values], dtype=np.float64)
    return out.reshape(tuple(shape))


def record(keyword: str, *fields: object, values: Iterable[str] = ()) -> str:
    """One line of a text file: keyword, integer/str fields, then value tokens."""
    parts = [keyword, *(str(f) for f in fields), *values]
    return " ".join(parts)
