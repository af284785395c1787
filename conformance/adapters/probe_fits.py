r"""Scalar fits of a probe entry's values to a probe array: $x = a\,y$ with one scalar $a$.

``state_discovery`` asks, for every numeric entry of a probe port's state, which probe arrays
(the gradient $g_1$, or $g_1^2$) it is a multiple of. A many-tensor port has hundreds of arrays
and entries; :class:`SameSize` fits one entry against all arrays of its size in one stacked
product: $a_i = \langle x, y_i\rangle / \langle y_i, y_i\rangle$, then the coordinatewise
check of :func:`fit` per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: relative tolerance of a probe fit (bfloat16 rounding of a few operations stays far below)
TOL = 3e-2
#: at most this many coordinates of same-size arrays are fitted in one stacked product
STACK = 1 << 22


def fit(x: np.ndarray, y: np.ndarray) -> float | None:
    """$a$ with $x = a y$ to ``TOL`` in every coordinate (``y`` has no zero), else None."""
    if x.shape != y.shape or not np.all(np.isfinite(x)):
        return None
    a = float(np.dot(x, y) / np.dot(y, y))
    if a == 0.0 or not math.isfinite(a):
        return None
    return a if bool(np.all(np.abs(x - a * y) <= TOL * np.abs(a * y))) else None


class SameSize:
    """The probe arrays of each size, stacked once, for :meth:`fits`."""

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        by: dict[int, list[int]] = {}
        for i, a in enumerate(arrays):
            if a.size > 0:
                by.setdefault(int(a.size), []).append(i)
        self._arrays = arrays
        self._by = by
        self._stacks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fits(self, x: np.ndarray) -> list[tuple[float, int]]:
        """(a, i) for every array i of ``x``'s size that ``x`` (flat) fits, as :func:`fit`
        decides it."""
        idx = self._by.get(x.size, [])
        if not idx:
            return []
        if len(idx) * x.size > STACK:
            out = [(fit(x, np.ravel(self._arrays[i])), i) for i in idx]
            return [(a, i) for a, i in out if a is not None]
        if not np.all(np.isfinite(x)):
            return []
        if x.size not in self._stacks:
            ys = np.stack([np.ravel(self._arrays[i]) for i in idx])
            self._stacks[x.size] = ys, np.einsum("ij,ij->i", ys, ys)
        ys, yy = self._stacks[x.size]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = (ys @ x) / yy
            ay = a[:, None] * ys
            ok = np.isfinite(a) & (a != 0.0) & np.all(np.abs(x - ay) <= TOL * np.abs(ay), axis=1)
        return [(float(a[k]), i) for k, i in enumerate(idx) if ok[k]]
