"""The arrays that cross the port boundary: checked on the way back, copied on the way in.

What a port returns is validated before any comparison (a sequence of float arrays of the
scenario's shapes, representable in the port's dtype), and a port's refusal of a state is
reported in its own words, without the exception's type and source line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .channel import Opaque
from .formats import representable
from .interface import DTYPES


def validate_arrays(
    what: str, arrays: Any, shapes: Sequence[tuple[int, ...]], dtype: str | None
) -> tuple[tuple[np.ndarray, ...] | None, str | None]:
    """Arrays as a float64 tuple, or an error message naming the first interface violation."""
    if isinstance(arrays, Opaque):
        return None, f"{what} returned {arrays.description}, not a sequence of arrays"
    try:
        seq = list(arrays)
    except TypeError:
        return None, f"{what} returned {type(arrays).__name__}, not a sequence of arrays"
    if len(seq) != len(shapes):
        return None, f"{what} returned {len(seq)} arrays, expected {len(shapes)}"
    out = []
    for i, (a, s) in enumerate(zip(seq, shapes, strict=True)):
        if isinstance(a, Opaque):
            return None, f"{what}[{i}] is {a.description}, not an array of numbers"
        arr = np.asarray(a)
        if arr.shape != tuple(s):
            return None, f"{what}[{i}] has shape {arr.shape}, expected {tuple(s)}"
        if not np.issubdtype(arr.dtype, np.floating):
            return None, f"{what}[{i}] has dtype {arr.dtype}, expected a float array"
        a64 = arr.astype(np.float64)
        if dtype is not None and dtype in DTYPES and not representable(a64, dtype):
            return None, f"{what}[{i}] holds values not representable in the port's dtype {dtype}"
        out.append(a64)
    return tuple(out), None


def copies(grads: Sequence[np.ndarray | None]) -> tuple[Any, ...]:
    """Copies of a step's gradients for the port (None stays None: no gradient)."""
    return tuple(None if g is None else np.array(g, copy=True) for g in grads)


def plain_reason(exc: BaseException) -> str:
    """A port's reason for refusing a state, without the exception's type and source line."""
    text = str(exc).strip()
    text = re.sub(r"^NotImplementedError: ", "", text)
    text = re.sub(r"^cannot continue from a given state: ", "", text)
    return re.sub(r" \([^()]*\.py:\d+\)$", "", text)
