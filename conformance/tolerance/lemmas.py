r"""The lemmas the tolerance model is built from: one rounding, a quotient, a square root.

**One rounding.** An operation whose exact result is $r$ returns, in a format with unit roundoff
$u$, smallest normal number $\mu$ and half subnormal spacing $\eta = u\mu$,

$$|\mathrm{fl}(r) - r| \le \min\bigl(\max(u|r|, \eta),\ |r|\bigr), \qquad
\max(u|r|, \eta) = u|r| + \max(\eta - u|r|, 0),$$

(relative $u$ in the normal range, absolute $\eta$ below it). The second term is the *underflow
excess* :func:`under`; it is zero as soon as $|r| \ge \mu$, so a budget pays for underflow only
where an intermediate can be subnormal. An excess that arises in an intermediate $x$ of a chain
of products and quotients reaches the chain's result multiplied by the *amplification*
$A = |\partial y/\partial x|$ (e.g. $1/\tilde w$ for $x = s\,m$ in $(s\,m)/\tilde w$): the
callers pass $A$ for every order they cover. :func:`rnd` is the whole bound of one rounding of a
value $|x|$ whose port value is within $e$ of it: $u(|x| + e) + \max(\eta - u|x|, 0)$.

**Quotient.** For $|x'-x| \le E_x$ and $|y'-y| \le E_y < |y|$,
$|x'/y' - x/y| \le (E_x|y| + |x|E_y)/(|y|(|y| - E_y))$, and no bound ($+\infty$) when
$E_y \ge |y|$ (:func:`div_err`).

**Square root.** For $a \ge 0$ and $|a' - a| \le E$ ($a' \ge 0$),
$|\sqrt{a'} - \sqrt a| = |a' - a|/(\sqrt{a'} + \sqrt a) \le E/(\sqrt a + \sqrt{\max(a - E, 0)})$
and $\le \sqrt E$ (:func:`sqrt_err`); the first form is $E/(2\sqrt a)$ to first order.

The bounds are evaluated in float64, whose smallest positive number is $2^{-1074}$: float64's own
$\eta = 2^{-1075}$ is not representable (it rounds to 0), so :func:`eta` returns $2^{-1074}$ for
it, the one place where the model is coarser than the format.
"""

from __future__ import annotations

import math

import numpy as np

from ..formats import Format

F = np.ndarray

#: smallest positive float64: the model's underflow term for float64 itself
_ETA_FLOOR = float(np.nextafter(0.0, 1.0))


def eta(f: Format) -> float:
    """Underflow term of ``f`` as a positive float64 (float64's own 2^-1075 rounds to 0)."""
    return max(f.eta, _ETA_FLOOR)


def under(x: F | float, f: Format, amp: F | float = 1.0, e: F | float | None = None) -> F:
    """Underflow excess ``amp * max(eta - u |x|, 0)`` of one rounding of a value of size |x|;
    with ``e`` (the port's value is within e of |x|) also at most ``amp * (|x| + e)``: an exact
    zero is not rounded."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    if ax.size == 0 or ax.min() >= f.tiny:  # fast path: every value normal, no excess
        shape = ax.shape
        if not (isinstance(amp, float) or np.shape(amp) == shape):
            shape = np.broadcast_shapes(shape, np.shape(amp))
        return np.zeros(shape)
    with np.errstate(invalid="ignore", over="ignore"):
        ex = np.maximum(eta(f) - f.u * ax, 0.0)
        if e is not None:
            ex = np.minimum(ex, ax + e)
        out = np.where(ex > 0, np.asarray(amp, dtype=np.float64) * ex, 0.0)
    return np.asarray(out, dtype=np.float64)


def rnd(x: F | float, e: F | float, f: Format) -> F:
    """Bound of one rounding in ``f`` of a value within ``e`` of |x|: u(|x| + e) + under(x), and
    never more than |x| + e (0 is a float: rounding to nearest moves r by at most |r|)."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    hi = ax + e
    if ax.size and ax.min() >= f.tiny:  # every value normal: under() is zeros of ax's shape
        return np.asarray(np.minimum(f.u * hi + 0.0, hi), dtype=np.float64)
    return np.asarray(np.minimum(f.u * hi + under(ax, f), hi), dtype=np.float64)


def div_err(x: F, ex: F, y: F, ey: F) -> F:
    """Rigorous bound of |x'/y' - x/y| for |x'-x| <= ex, |y'-y| <= ey (inf when y may vanish)."""
    ay = np.abs(y)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        room = ay - ey
        # (ex |y| + |x| ey) / (|y| (|y| - ey)), written without products of two small numbers
        out = (ex + (np.abs(x) / ay) * ey) / room
        out = np.where(room > 0, out, np.inf)
        out = np.where((ex == 0) & (ey == 0), 0.0, out)
    return np.asarray(out, dtype=np.float64)


def sqrt_err(a: F, ea: F) -> F:
    """Rigorous bound of |sqrt(a') - sqrt(a)| for |a' - a| <= ea, a, a' >= 0."""
    a = np.maximum(np.asarray(a, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = np.sqrt(a) + np.sqrt(np.maximum(a - ea, 0.0))
        lin = np.where(den > 0, ea / den, np.inf)
        out = np.minimum(lin, np.sqrt(ea))
        out = np.where(ea == 0, 0.0, out)
    return np.asarray(out, dtype=np.float64)


def rel_product(rels: list[F | float], inv: list[F | float] | None = None) -> F:
    r"""Relative error bound of a product of perturbed factors: $\prod(1+r_i)/\prod(1-s_j) - 1$.

    ``rels`` bound the relative errors of the factors, ``inv`` those of the divisors (each must
    be below 1, else there is no bound: inf). Composed without forming $1 + r$: $a \leftarrow a
    + r(1 + a)$ per factor, $a \leftarrow (a + s)/(1 - s)$ per divisor. Formed as the product,
    $1 + 2^{-53}$ rounds to 1 in float64 and a float64 rounding vanished from the bound (float64
    budgets came out up to 1.48x too tight: ``weight_decay_decoupled``'s re-synced params); a
    zero term leaves $a$ as it is (so an infinite $a$ stays infinite, never NaN).
    """
    if all(isinstance(r, float) for r in rels) and all(isinstance(s, float) for s in inv or []):
        # scalars: the same float64 operations in Python floats (bitwise equal, no array calls)
        fa = 0.0
        for r in rels:
            if float(r) != 0.0:
                fa = fa + float(r) * (1.0 + fa)
        for s in inv or []:
            if not float(s) < 1.0:
                return np.asarray(math.inf, dtype=np.float64)
            if float(s) != 0.0:
                fa = (fa + float(s)) / (1.0 - float(s))
        return np.asarray(fa, dtype=np.float64)
    a: F | float = 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for r in rels:
            ra = np.asarray(r, dtype=np.float64)
            a = np.where(ra == 0.0, a, a + ra * (1.0 + a))
        for s in inv or []:
            sa = np.asarray(s, dtype=np.float64)
            a = np.where(sa < 1.0, np.where(sa == 0.0, a, (a + sa) / (1.0 - sa)), np.inf)
    return np.asarray(a, dtype=np.float64)
