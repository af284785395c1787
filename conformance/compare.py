"""Comparison of one quantity against its budget: worst budget fraction, ulps, where, counts.

``compare_quantity`` turns a port value, a reference value and an absolute bound (from
:mod:`conformance.tolerance`) into a :class:`~conformance.results.Measure`: the worst budget
fraction (|port - ref| / bound, <= 1 passes), the worst error in ulps of the dtype at the
reference value, where it happened, and how many coordinates failed or could not be judged
(infinite bound: the dtype cannot resolve the quantity there).
"""

from __future__ import annotations

import numpy as np

from .formats import ulp
from .layout import Flat
from .results import Measure, Worst


def compare_quantity(
    quantity: str,
    port: np.ndarray,
    ref: np.ndarray,
    bound: np.ndarray,
    dtype: str,
    flat: Flat | None,
    step: int,
    mask: np.ndarray | None = None,
    max_ulps: bool = False,
) -> Measure:
    """Compare flat ``port`` against flat ``ref`` with absolute bounds ``bound``.

    The worst coordinate is the one with the largest budget fraction (ties: largest error); its
    error in ulps is reported. ``max_ulps=True`` also computes the largest error in ulps over all
    coordinates (``Measure.max_ulps``; otherwise that of the worst coordinate).
    """
    port = np.asarray(port, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    bound = np.asarray(bound, dtype=np.float64)
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
    else:
        keep = np.ones(ref.shape, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(port - ref)
        if not np.all(np.isfinite(diff)):
            same = ~np.isfinite(ref) & ((port == ref) | (np.isnan(port) & np.isnan(ref)))
            diff = np.where(same, 0.0, diff)
            diff = np.where(np.isnan(diff), np.inf, diff)
        finite_b = np.isfinite(bound)
        frac = np.where(diff == 0, 0.0, diff / np.where(bound > 0, bound, 0.0))
        frac = np.where(np.isnan(frac), np.inf, frac)
        unresolved = keep & ~finite_b & (diff > 0)
        frac = np.where(finite_b & keep, frac, 0.0)
        if max_ulps:
            ulps = np.where(keep, diff / ulp(ref, dtype), 0.0)
    nonfinite = keep & ~np.isfinite(port) & np.isfinite(ref) & finite_b
    n = frac.size
    if n == 0:
        w = Worst(quantity, 0.0, 0.0, step, None, None, 0.0, 0.0, 0.0)
        return Measure(w, 0, 0, 0, 0.0)
    if np.any(frac > 0):
        k = int(np.argmax(frac))
    else:
        k = int(np.argmax(np.where(keep, diff, -1.0)))
    k_ulps = float(diff[k] / ulp(ref[k : k + 1], dtype)[0]) if keep[k] else 0.0
    if flat is not None and quantity != "cos2":
        arr, idx = flat.locate(k)
        array: int | None = arr
        index: tuple[int, ...] | None = idx
    else:
        array, index = k, ()
    w = Worst(
        quantity,
        float(frac[k]),
        k_ulps,
        step,
        array,
        index,
        float(port[k]),
        float(ref[k]),
        float(bound[k]),
    )
    return Measure(
        w,
        int(np.count_nonzero(frac > 1.0)),
        int(np.count_nonzero(unresolved)),
        int(np.count_nonzero(nonfinite)),
        float(np.max(ulps)) if max_ulps and ulps.size else k_ulps,
    )
