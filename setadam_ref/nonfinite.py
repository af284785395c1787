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
    state_in: Sequence[tuple[str, Sequence[F64Array] | None]] = (),
    zero_over_zero: Sequence[F64Array] | None = None,
) -> None:
    """Raise for the first bad array among ``suspects``; return if none.

    In order, so that the error names the cause rather than its consequence: a non-finite input
    (gradients, parameters, then the state given as ``state_in``: it already held NaN or an
    infinity); Adam's $0/0$ when $\\epsilon = \\epsilon_{root} = 0$ meets a zero second moment
    (``zero_over_zero`` is the second moment the step divided by, given only in that case); only
    then float64 overflow of $v_t$ or $\\theta_t$ from finite inputs."""
    arrays = sorted(set(suspects))
    for i in arrays:
        for what, a in (("grads", grads[i]), ("params", params[i])):
            if bad := _count(a):
                raise NonFiniteError(what, i, t, bad, int(a.size))
        for name, held in state_in:
            if held is not None and (bad := _count(held[i])):
                kind = "NaN" if np.isnan(held[i]).any() else "an infinity"
                size = int(held[i].size)
                raise NonFiniteError(
                    f"state.{name}", i, t, bad, size,
                    f"state holds {kind} in {name} of array {i} ({bad} of {size} entries) "
                    f"before step t={t}",
                )  # fmt: skip
    if zero_over_zero is not None:
        for i in arrays:
            out = new_params[i]
            if bad := int(np.count_nonzero(~np.isfinite(out) & (zero_over_zero[i] == 0.0))):
                raise NonFiniteError(
                    "params after the step", i, t, bad, int(out.size),
                    f"Adam with eps = eps_root = 0 divides 0 by 0 at step t={t}: params[{i}] "
                    f"has {bad} coordinates whose second moment is zero (a zero gradient)",
                )  # fmt: skip
    for i in arrays:
        # Finite inputs, non-finite result: float64 itself overflowed.
        for what, a in (
            ("v (overflowed float64 from finite gradients)", new_v[i]),
            ("params after the step (overflowed float64)", new_params[i]),
        ):
            if bad := _count(a):
                raise NonFiniteError(what, i, t, bad, int(a.size))
