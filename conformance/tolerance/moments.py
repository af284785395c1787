r"""Bounds of the effective gradient and the moments $m$, $v$ (and amsgrad's $v^{\max}$).

The gradient is formed in the parameter format, the moments in the *state* format (issue 11:
bfloat16 parameters with float32 state have float32 moment errors). Each bound is the linear
propagation of the input errors (exact coefficients) plus, for the constants and roundings, the
largest over the orders a correct port may use:

- $m = \beta_1 m_0 + (1-\beta_1) g$: two products and a sum, a fused multiply-add, or torch's
  ``lerp`` $m_0 + w(g - m_0)$ ($w = 1-\beta_1 < 1/2$) / $g - (g - m_0)(1-w)$ ($w \ge 1/2$);
- $v = \beta_2 v_0 + (1-\beta_2) g^2$: the square first, $((1-\beta_2) g)\,g$ (whose
  intermediate's underflow excess is amplified by $|g|$), a fused multiply-add, or ``lerp``.

With $E^{in}$ the input bounds, $\rho$ the constants' exact relative errors
(:mod:`~conformance.tolerance.scalars`) and $\mathrm{rnd}(x, e)$ one rounding
(:func:`~conformance.tolerance.lemmas.rnd`), e.g. for the two-product form of $m$:

$$E_m = \beta_1E^{in}_m + (1-\beta_1)E_g + p_1 + \mathrm{rnd}(\beta_1 m_0) + p_2
  + \mathrm{rnd}((1-\beta_1) g) + \mathrm{rnd}(m),\quad
  p_1 = \beta_1(|m_0| + E^{in}_m)\rho_{\beta_1},\ p_2 = (1-\beta_1)(|g| + E_g)\rho_{1-\beta_1}.$$
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from .lemmas import rnd
from .scalars import const_rel, rho_lerp_complement, rho_one_minus

F = np.ndarray


def grad_bound(ge: F, theta0: F, eg_in: F, etheta_in: F, wd: float, l2: bool, f: Format) -> F:
    r"""$E_g$ of the effective gradient $g_e = \pm g + \lambda\theta$ (``l2``) in format ``f``."""
    if not l2:
        return eg_in
    rw = const_rel(wd, f)
    wt = wd * np.abs(theta0)
    t1 = wt * rw + wd * etheta_in * (1 + rw)
    e_prod = t1 + rnd(wt, t1, f)
    return np.asarray(eg_in + e_prod + rnd(ge, eg_in + e_prod, f), dtype=np.float64)


def _lerp_extra(
    start: F, e_start: F, end: F, e_end: F, rend: F, w: float, beta: float, out: F, f: Format
) -> F:
    """Rounding/constant terms of torch's lerp(start, end, w); ``rend``: rounding of ``end``
    already done (the square of lerp's v), amplified by w like the input error of ``end``."""
    d = np.abs(end - start)
    d_in = e_end + rend + e_start
    rd = rnd(d, d_in, f)
    if w < 0.5:
        rw = rho_one_minus(beta, f)
        prod_err = w * (1 + rw) * (d_in + rd) + w * rw * d
        extra = w * rend + w * (1 + rw) * rd + w * rw * (d + d_in + rd)
        extra = extra + rnd(w * d, prod_err, f)
    else:
        c = 1.0 - w  # = beta
        rc = rho_lerp_complement(beta, f)
        prod_err = c * (1 + rc) * (d_in + rd) + c * rc * d
        extra = w * rend + c * (1 + rc) * rd + c * rc * (d + d_in + rd)
        extra = extra + rnd(c * d, prod_err, f)
    prop = (1 - w) * e_start + w * e_end
    return np.asarray(extra + rnd(out, prop + extra, f), dtype=np.float64)


def m_bound(m0: F, em0: F, ge: F, eg: F, m: F, beta1: float, fs: Format) -> F:
    """$E_m$: the first moment in the state format ``fs`` (largest over the orders)."""
    b, w = beta1, 1.0 - beta1
    rb, rw = const_rel(b, fs), rho_one_minus(b, fs)
    prop = b * em0 + w * eg
    am0, age = np.abs(m0), np.abs(ge)
    p1 = b * (am0 + em0) * rb
    r1 = rnd(b * am0, b * em0 + p1, fs)
    p2 = w * (age + eg) * rw
    r2 = rnd(w * age, w * eg + p2, fs)
    two = p1 + r1 + p2 + r2
    two = two + rnd(m, prop + two, fs)
    lerp = _lerp_extra(m0, em0, ge, eg, np.zeros_like(m), w, b, m, fs)
    return np.asarray(prop + np.maximum(two, lerp), dtype=np.float64)


def v_bound(v0: F, ev0: F, ge: F, eg: F, v: F, beta2: float, fs: Format) -> F:
    """$E_v$: the second moment in the state format ``fs`` (largest over the orders)."""
    b, w = beta2, 1.0 - beta2
    rb, rw = const_rel(b, fs), rho_one_minus(b, fs)
    age = np.abs(ge)
    g2 = ge * ge
    sq_in = 2 * age * eg + eg * eg
    prop = b * ev0 + w * sq_in
    p1 = b * (v0 + ev0) * rb
    r1 = rnd(b * v0, b * ev0 + p1, fs)
    # square first: fl(fl(g*g) * (1 - beta2))
    rs = rnd(g2, sq_in, fs)
    p2 = w * (g2 + sq_in + rs) * rw
    r2 = rnd(w * g2, w * (sq_in + rs) + p2, fs)
    first = w * rs + p2 + r2
    # scale first: fl(fl((1 - beta2) * g) * g); the intermediate's error is amplified by |g|
    p_sg = w * (age + eg) * rw
    r_sg = rnd(w * age, w * eg + p_sg, fs)
    e_scale = (p_sg + r_sg) * (age + eg)
    scale = e_scale + rnd(w * g2, w * sq_in + e_scale, fs)
    two = p1 + r1 + np.maximum(first, scale)
    two = two + rnd(v, prop + two, fs)
    lerp = _lerp_extra(v0, ev0, g2, sq_in, rs, w, b, v, fs)
    return np.asarray(prop + np.maximum(two, lerp), dtype=np.float64)


def vhat_max_bound(v: F, ev: F, evmax0: F, bc2: float, rho_bc2: float, fs: Format) -> F:
    r"""optax's amsgrad: $E$ of $\max(v^{\max}_0, v/b_2)$, the maximum over bias-corrected $v$."""
    vh = v / bc2
    e = (ev + v * rho_bc2) / (bc2 * (1 - rho_bc2)) if rho_bc2 < 1 else np.full_like(v, np.inf)
    return np.asarray(np.maximum(evmax0, e + rnd(vh, e, fs)), dtype=np.float64)
