"""Input conversion: sequences of real floating arrays to float64, with clear errors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

F64Array = npt.NDArray[np.float64]


def as_float64(a: Any, what: str, index: int) -> F64Array:
    """``a`` as a float64 array (no copy when it already is one); rejects non-real-float dtypes."""
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{what}[{index}] has dtype {arr.dtype}; the reference takes real floating arrays "
            "(float16, float32, float64, ...)"
        )
    return arr.astype(np.float64, copy=False)


def as_float64_tuple(arrays: object, what: str) -> tuple[F64Array, ...]:
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence):
        raise TypeError(
            f"{what} must be a sequence (list or tuple) of arrays, got {type(arrays).__name__}"
        )
    return tuple(as_float64(a, what, i) for i, a in enumerate(arrays))


def frozen(a: F64Array) -> F64Array:
    """Mark an array the reference created as read-only, so results cannot be mutated by accident."""
    a.flags.writeable = False
    return a


def shaped_like(arrays: Iterable[F64Array], like: Sequence[Any]) -> tuple[F64Array, ...]:
    """``arrays`` (flat, fresh) reshaped to the shapes of ``like`` in order, read-only."""
    return tuple(
        frozen(np.asarray(a).reshape(np.shape(b))) for a, b in zip(arrays, like, strict=True)
    )
