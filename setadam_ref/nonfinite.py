"""The ``nonfinite="raise"`` policy: find what made a step non-finite and raise ``NonFiniteError``.

A non-finite $g$ or $\\theta$ always reaches $\\theta_t$ (through $m$, $v$ and, for SET-Adam, the
layer statistics), and an overflowed $v$ reaches Adam's $\\theta_t$ only as a zero update, so the
screen looks at $\\theta_t$ (and Adam's $v_t$). One sum per array (or per block, in the fast path)
screens it: a sum of finite values is finite unless it overflows, so a finite sum proves the
array clean and a non-finite one only means "count exactly" (docs: numerics/overflow.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from .arrays import F64Array
from .errors import NonFiniteError


def suspect(a: F64Array) -> bool:
    """False when ``a`` certainly holds only finite values (one sum)."""
    return not math.isfinite(float(np.sum(a)))


def screen(new_params: Sequence[F64Array], new_v: Sequence[F64Array], with_v: bool) -> list[int]:
    """The arrays whose $\theta_t$ (and, ``with_v``, $v_t$: Adam) may hold NaN/Inf."""
    return [
        i
        for i, (p, v) in enumerate(zip(new_params, new_v, strict=True))
        if suspect(p) or (with_v and suspect(v))
    ]


def _count(a: F64Array) -> int:
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def raise_if_nonfinite(
    suspects: Iterable[int],
    params: Sequence[F64Array],
    grads: Sequence[F64Array],
    new_v: Sequence[F64Array],
    new_params: Sequence[F64Array],
    t: int,
) -> None:
    """Raise for the first bad array among ``suspects``: inputs first (so the error names the bad
    input rather than its consequence), then overflow of $v_t$ or $\\theta_t$; return if none."""
    arrays = sorted(set(suspects))
    for i in arrays:
        for what, a in (("grads", grads[i]), ("params", params[i])):
            if bad := _count(a):
                raise NonFiniteError(what, i, t, bad, int(a.size))
    for i in arrays:
        # Finite inputs, non-finite result: float64 itself overflowed.
        for what, a in (
            ("v (overflowed float64 from finite gradients)", new_v[i]),
            ("params after the step (overflowed float64)", new_params[i]),
        ):
            if bad := _count(a):
                raise NonFiniteError(what, i, t, bad, int(a.size))
