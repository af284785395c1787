r"""SET-Adam's three stages as pure functions (docs: algorithms/setadam.md).

Symbols: layer $l$ with $d_l$ coordinates, second moment $v_l \ge 0$, bias correction
$b_2 = 1 - \beta_2^t$.

- down-scaling (S): $c_l = (\sum_i v_i)^2 / (d_l \sum_i v_i^2) = \cos^2\angle(v_l, \mathbf 1_l)$,
  $vs_l = c_l v_l$;
- epsilon-embedding (E): $w_l = \sqrt{vs_l / b_2 + \epsilon}$;
- down-translating (T): $\tilde w_l = w_l - \tau \min_i w_{l,i}$.

$c_l$ is defined by its overflow-safe evaluation (docs: numerics/overflow.md): each array of the
layer is cut into blocks of ``BLOCK`` entries, each block gives power-of-two-scaled sums
(``scaled_sums``), and ``combine`` adds the blocks with ``math.fsum``. The step
(``setadam.setadam_step``) calls exactly these functions, so what is tested here is what the step
computes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from .arrays import F64Array

#: Entries per block of the layer sums. Part of the definition of $c_l$: the pairwise sums within a
#: block and the correctly rounded ``fsum`` across blocks fix its last bits.
BLOCK = 1 << 15


class ScaledSums(NamedTuple):
    r"""Partial sums of one piece of a layer, scaled by a power of two so they cannot overflow.

    With $e$ the exponent of the piece's largest entry ($\max v = f 2^e$, $f \in [1/2, 1)$):
    ``s1`` $= \sum_i v_i 2^{-e}$ and ``s2`` $= \sum_i (v_i 2^{-e})^2$, both in $[1/4, n]$ when
    the piece is non-zero. ``exponent`` is $e$ (``None`` for an all-zero or empty piece).
    """

    size: int
    v_min: float
    v_max: float
    exponent: int | None
    s1: float
    s2: float


_SAFE_EXPONENT = 400


def _scale_by_power_of_two(v: F64Array, e: int, out: F64Array) -> F64Array:
    # v * 2**-e is exact in IEEE arithmetic whenever the result is a normal number, which holds for
    # the large entries that matter; 2**-e itself is representable only for e >= -1022.
    if e >= -1022:
        return np.multiply(v, math.ldexp(1.0, -e), out=out)
    return np.ldexp(v, -e, out=out)


def scaled_sums(v: F64Array, scratch: F64Array | None = None) -> ScaledSums:
    """``ScaledSums`` of a 1-D piece ``v`` of a layer; ``scratch`` (same size) avoids an allocation."""
    n = int(v.size)
    if n == 0:
        return ScaledSums(0, math.nan, math.nan, None, 0.0, 0.0)
    v_max = float(v.max())
    v_min = float(v.min())
    if v_max == 0.0 or not math.isfinite(v_max):
        # All zero: nothing to sum. Non-finite: the sums are meaningless; propagate NaN.
        bad = 0.0 if v_max == 0.0 else math.nan
        return ScaledSums(n, v_min, v_max, None, bad, bad)
    e = math.frexp(v_max)[1]
    u = np.empty_like(v) if scratch is None else scratch[:n]
    if -_SAFE_EXPONENT <= e <= _SAFE_EXPONENT:
        # Squares of entries up to 2**400 cannot overflow, and entries whose square underflows
        # are below 2**-537, at most 2**-137 of the largest square: sum unscaled, then scale the
        # two sums exactly by powers of two. This saves a pass over the block.
        s1 = math.ldexp(float(v.sum()), -e)
        np.multiply(v, v, out=u)
        s2 = math.ldexp(float(u.sum()), -2 * e)
    else:
        _scale_by_power_of_two(v, e, u)
        s1 = float(u.sum())
        np.multiply(u, u, out=u)
        s2 = float(u.sum())
    return ScaledSums(n, v_min, v_max, e, s1, s2)


class LayerMoments(NamedTuple):
    """What down-scaling needs of a whole layer: $d_l$, $c_l$, $\\min v$, $\\max v$."""

    size: int
    cos2: float
    v_min: float
    v_max: float


def combine(pieces: Iterable[ScaledSums]) -> LayerMoments:
    r"""Combine the pieces of one layer (in the order given) into $c_l$.

    Pieces are rescaled to the largest exponent $E$: $S_1 2^{-E} = \sum_k 2^{e_k - E} s_{1,k}$,
    $S_2 2^{-2E} = \sum_k 2^{2(e_k - E)} s_{2,k}$, each added with ``math.fsum`` (correctly
    rounded), and $c = (S_1 2^{-E})^2 / (d\, S_2 2^{-2E})$. The scale cancels, so $c$ is free of
    overflow and underflow over the whole float64 range. Rounding can carry $c$ a few ulps past
    its proven bounds $[1/d, 1]$; it is clamped back into them (docs: numerics/overflow.md), and
    a constant layer (min = max) gets exactly 1.
    """
    parts = [p for p in pieces if p.size > 0]
    d = sum(p.size for p in parts)
    if d == 0:
        return LayerMoments(0, 1.0, math.nan, math.nan)
    v_min = min(p.v_min for p in parts)
    v_max = max(p.v_max for p in parts)
    if not (math.isfinite(v_max) and math.isfinite(v_min)) or any(math.isnan(p.s1) for p in parts):
        return LayerMoments(d, math.nan, v_min, v_max)
    if v_max == 0.0 or v_min == v_max:
        # All-zero layer: no angle; c*v = 0 for any c, and 1 leaves v unchanged.
        # Constant layer: v is parallel to the all-one vector, c = 1 exactly.
        return LayerMoments(d, 1.0, v_min, v_max)
    big = max(p.exponent for p in parts if p.exponent is not None)
    s1 = math.fsum(math.ldexp(p.s1, p.exponent - big) for p in parts if p.exponent is not None)
    s2 = math.fsum(
        math.ldexp(p.s2, 2 * (p.exponent - big)) for p in parts if p.exponent is not None
    )
    c = (s1 * s1) / (d * s2)
    return LayerMoments(d, min(1.0, max(1.0 / d, c)), v_min, v_max)


def blocks(v: F64Array) -> Iterator[F64Array]:
    """The consecutive ``BLOCK``-entry pieces of the flattened ``v`` (the last one shorter)."""
    flat = np.ravel(v)
    for start in range(0, flat.size, BLOCK):
        yield flat[start : start + BLOCK]


def _arrays(v: F64Array | Sequence[F64Array]) -> list[F64Array]:
    arrays = [v] if isinstance(v, np.ndarray) else list(v)
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def layer_moments(v: F64Array | Sequence[F64Array]) -> LayerMoments:
    """$d_l$, $c_l$, $\\min v$, $\\max v$ of a layer given as one array or as its arrays in order.

    The definition of $c_l$: ``combine`` of the ``scaled_sums`` of every block of every array.
    """
    return combine(scaled_sums(b) for a in _arrays(v) for b in blocks(a))


def cos2(v: F64Array | Sequence[F64Array]) -> float:
    """$c_l$ of a layer given as one array or as the sequence of its arrays (any shapes).

    1.0 for an empty or all-zero layer (see ``combine``); NaN if ``v`` holds NaN or Inf.
    """
    return layer_moments(v).cos2


def layer_min(w: F64Array | Sequence[F64Array]) -> float:
    """$\\min_i w_{l,i}$ over a layer's arrays; NaN for an empty layer or if any entry is NaN."""
    mins = [np.min(a) for a in _arrays(w) if a.size]
    return float(np.min(mins)) if mins else math.nan


def down_scale(
    v: F64Array, c: float | None = None, out: F64Array | None = None
) -> tuple[float, F64Array]:
    """Down-scaling (S): ``(c, c * v)``; ``c`` is computed from ``v`` (one layer) when not given."""
    if c is None:
        c = cos2(v)
    return c, np.multiply(v, c, out=out)


def embed(
    v_scaled: F64Array, bias_correction2: float, eps: float, out: F64Array | None = None
) -> F64Array:
    r"""Epsilon-embedding (E): $w = \sqrt{vs / (1 - \beta_2^t) + \epsilon}$."""
    w = np.divide(v_scaled, bias_correction2, out=out)
    np.add(w, eps, out=w)
    return np.sqrt(w, out=w)


def embed_scalar(v_scaled: float, bias_correction2: float, eps: float) -> float:
    """``embed`` of one value, with the same IEEE operations (so it equals ``embed`` bitwise)."""
    return float(embed(np.array([v_scaled]), bias_correction2, eps)[0])


def translate_by(w: F64Array, tau: float, w_min: float, out: F64Array | None = None) -> F64Array:
    r"""Down-translating (T) with a known layer minimum: $\tilde w = w - \tau w_{\min}$."""
    return np.subtract(w, tau * w_min, out=out)


def translate(w: F64Array, tau: float) -> tuple[F64Array, float]:
    """Down-translating (T) of one whole layer: ``(w - tau * min(w), min(w))``."""
    w_min = layer_min(w)
    return translate_by(w, tau, w_min), w_min
