r"""Errors of the step's scalar constants: hyperparameters, $1-\beta$, bias corrections.

Assumption 2 of the model: scalar arithmetic on hyperparameters is done in at least float32, the
*scalar format* $S$ (the dtype itself for float32 / float64). A tensor operation in format $X$
sees a constant either in $S$ (torch's ``opmath``: the operation computes in $S$ and rounds once)
or rounded once more into $X$ (NumPy's arithmetic on a float16 array with a Python float). Both
paths are covered, and where the constant is a known number its error is computed *exactly*, not
bounded by $u$: the rounding of $\beta_2 = 0.999$ to float32 is $1.3\cdot10^{-8}$, a quarter of
$u_{32}$, and it is the same in every port.

- :func:`const_rel`: a hyperparameter $x$ (lr, eps, tau, lambda, beta) as a tensor operation
  sees it, exact over the paths $x \to S$, $x \to S \to X$, $x \to X$.
- :func:`rho_one_minus`: $1 - \beta$ formed from a rounded $\beta$ in $S$ (exact by Sterbenz
  for $\beta \ge 1/2$, else one rounding) or from $\beta$ in float64 and rounded to $S$; exact.
- :func:`rho_bias_correction`: $b = 1 - \beta^t$ with $\beta^t$ from a rounded $\beta_S$ by
  ``pow`` (at most 1 ulp, $2u_S$; exact for $t = 1$), by $t-1$ repeated products
  ($\gamma_{t-1}(u_S)$) or by
  ``expm1(t log1p(-(1-beta)))`` (float64), or $1-\beta^t$ in float64 rounded to $S$:

  $$\rho_b = \frac{|\beta_S^t - \beta^t| + \max(2u_S, \gamma_{t-1}(u_S))\,\beta_S^t
     + t\,\eta_S}{b} + u_S\ (+\ \text{its rounding into } X),$$

  where $|\beta_S^t - \beta^t|$, the effect of rounding $\beta$, is computed exactly (its
  condition number $t\beta^t/(1-\beta^t)$ is what makes the first steps hard), $t\eta_S$ covers
  $\beta^t$ underflowing, and $u_S$ the subtraction (or the final rounding to $S$).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np

from ..formats import FORMATS, Format, gamma, round_to
from .lemmas import rel_product


def scalar_format(f: Format) -> Format:
    """The format of scalar hyperparameter arithmetic next to tensors of ``f``: at least f32."""
    return f if f.p >= 24 else FORMATS["float32"]


def scalar_u(f: Format) -> float:
    """Unit roundoff of scalar (hyperparameter, bias-correction) arithmetic: at least float32."""
    return scalar_format(f).u


@lru_cache(maxsize=4096)
def _round(x: float, f: Format) -> float:
    return float(round_to(np.array([x]), f.name)[0])


@lru_cache(maxsize=4096)
def native_rel(x: float, f: Format) -> float:
    """Relative error of rounding a scalar ``x`` of the scalar format into ``f`` (0 if exact)."""
    if x == 0.0 or not math.isfinite(x):
        return 0.0
    return abs(_round(x, f) - x) / abs(x)


@lru_cache(maxsize=4096)
def const_rel(x: float, f: Format) -> float:
    """Exact relative error of the hyperparameter ``x`` as an operation in ``f`` sees it."""
    if x == 0.0:
        return 0.0
    s = scalar_format(f)
    xs = _round(x, s)
    paths = (xs, _round(xs, f), _round(x, f))
    fx = Fraction(x)
    return max(float(abs(Fraction(p) - fx) / abs(fx)) for p in paths)


@lru_cache(maxsize=4096)
def rho_one_minus(beta: float, f: Format) -> float:
    """Exact relative error of ``1 - beta`` as a port may form it for an operation in ``f``.

    Paths: beta rounded to the scalar format S, then ``1 - beta_S`` in S (exact for
    beta_S >= 1/2); or ``1 - beta`` in float64, rounded to S; each possibly rounded once more into
    ``f``. The largest error over the paths, relative to the exact 1 - beta.
    """
    if beta == 0.0:
        return 0.0
    s = scalar_format(f)
    exact = 1 - Fraction(beta)
    bs = _round(beta, s)
    a = _round(float(1 - Fraction(bs)), s)  # 1 - bs is exact in float64 for float32 bs
    b = _round(1.0 - beta, s)
    paths = (a, b, _round(a, f), _round(b, f))
    return max(float(abs(Fraction(p) - exact) / exact) for p in paths)


@lru_cache(maxsize=4096)
def power_error(beta: float, t: int, s: Format) -> float:
    """Bound of |computed beta^t - beta^t| in the scalar format ``s`` (pow, products, expm1)."""
    if beta == 0.0 or t <= 0:
        return 0.0
    bs = _round(beta, s)
    bt = beta**t
    # |bs^t - beta^t| = beta^t |expm1(t log1p(d/beta))|, accurate to a few float64 ulps; a beta
    # that rounds to 0 in the scalar format (below its subnormal range) leaves beta^t itself
    d = (bs - beta) / beta
    if d <= -1.0:
        exact_part = bt
    else:
        exact_part = abs(bt * math.expm1(t * math.log1p(d))) * (1 + 2.0**-50)
    # beta^1 = beta exactly; pow(x, t) within 1 ulp, t - 1 products within gamma_{t-1}
    chain = 0.0 if t == 1 else max(2 * s.u, gamma(t - 1, s.u))
    return exact_part + chain * bs**t + t * s.eta


@lru_cache(maxsize=4096)
def bias_correction_parts(beta: float, t: int, f: Format) -> tuple[float, float]:
    """(relative error of ``1 - beta^t`` in the scalar format, of its rounding into ``f``)."""
    s = scalar_format(f)
    bt = beta**t
    bc = 1.0 - bt
    if bc <= 0.0:
        return float("inf"), 0.0
    rel_s = power_error(beta, t, s) / bc + s.u + 8 * 2.0**-53
    into = 0.0
    if f.p < s.p:
        into = max(f.u, f.eta / (bc * (1.0 - rel_s))) if rel_s < 1 else float("inf")
    return rel_s, into


@lru_cache(maxsize=4096)
def rho_bias_correction(beta: float, t: int, f: Format) -> float:
    """Relative error bound of ``1 - beta^t`` as an operation in ``f`` sees it (see the module
    docstring); ``inf`` when 1 - beta^t is not positive."""
    rel_s, into = bias_correction_parts(beta, t, f)
    return float(rel_product([rel_s, into]))  # not (1 + a)(1 + b) - 1: 1 + 2^-53 = 1


@lru_cache(maxsize=4096)
def into_rel(x: float, f: Format) -> float:
    """Relative bound of rounding a scalar-format value of size |x| into a coarser ``f``."""
    s = scalar_format(f)
    if f.p >= s.p or x == 0.0:
        return 0.0
    return max(f.u, f.eta / abs(x))


@lru_cache(maxsize=4096)
def rho_lerp_complement(beta: float, f: Format) -> float:
    """Exact relative error of ``1 - w`` (w = 1 - beta as formed by :func:`rho_one_minus`'s
    paths), the weight torch's ``lerp`` uses when w >= 1/2; 0 for beta = 0 (1 - 1 = 0)."""
    if beta == 0.0:
        return 0.0
    s = scalar_format(f)
    bs = _round(beta, s)
    ws = (_round(float(1 - Fraction(bs)), s), _round(1.0 - beta, s))
    paths = []
    for w in ws:
        c = _round(float(1 - Fraction(w)), s)
        paths += [c, _round(c, f)]
    fb = Fraction(beta)
    return max(float(abs(Fraction(p) - fb) / fb) for p in paths)
