r"""Bounds of the denominators: Adam's $\sqrt{\hat v + \epsilon_r} + \epsilon$, SET-Adam's $c v$, $w$, $\tilde w$.

All in the format $X$ of the step's intermediates (the coarser of the parameter and the state
format). Notation as in docs/src/numerics/tolerance.md: $b_2 = 1-\beta_2^t$ with relative error
$\rho_{b}$, $\rho_{1/b} = (1+\rho_b)(1+u_S) - 1$ for a precomputed $1/b_2$ or $\sqrt{b_2}$,
$\mathrm{rnd}$ one rounding (with its underflow excess), $\mathrm{sq}$ the square-root lemma.

**Adam.** $a = \hat v + \epsilon_r$ with $\hat v = v/b_2$ or $v \cdot (1/b_2)$:
$E_a = (E_v + v\rho)/(b_2(1-\rho)) + \mathrm{rnd}(\hat v) + \epsilon_r\rho_{\epsilon_r} + \mathrm{rnd}(a)$;
$E_r = \mathrm{sq}(a, E_a) + \mathrm{rnd}(r)$, or in torch's order
$\sqrt v/\sqrt{b_2}$: $E_r = (\mathrm{sq}(v, E_v) + \mathrm{rnd}(\sqrt v) + \sqrt v\,\rho_{1/b})/
(\sqrt{b_2}(1-\rho_{1/b})) + \mathrm{rnd}(r)$; $E_\text{denom} = E_r + \epsilon\rho_\epsilon +
\mathrm{rnd}(\text{denom})$.

**Down-scaling.** With $E_c$, $c_{hi}$ from :mod:`~conformance.tolerance.statistics`:
$E_{vs} = \min(cE_v + vE_c + E_vE_c,\ \max(c_{hi}(v + E_v) - cv,\ cv)) + \mathrm{rnd}(vs)$
(the second form: $c'v' \in [0, c_{hi}(v+E_v)]$, and $c'v' = 0$ for an all-zero $v'$).

**Epsilon-embedding.** $b = vs/b_2 + \epsilon$ by a division, a precomputed $1/b_2$, $c/b_2$ or a
fused multiply-add, then $w = \sqrt b$; or $w = \sqrt{vs + \epsilon b_2}/\sqrt{b_2}$ with one
value of $b_2$ in the step (its error then stays on $vs/b_2$, as in the division), where every
absolute error of $vs + \epsilon b_2$, underflow included, is divided by $b_2$ (amplified by
$1/b_2$ against the first order: $10^3$ at $\beta_2 = 0.999$, $t = 1$).

**Down-translating.** $E_{w_{\min}} = \max(E_w(\arg\min w),\ w_{\min} - \min_i(w_i - E_{w,i}))$
(infinite when some $E_w$ is: the port's minimum is then unbounded; an empty layer has no
minimum and no term), $E_{\tau w_{\min}} = \tau E_{w_{\min}}(1+\rho_\tau) + \tau w_{\min}\rho_\tau
+ \mathrm{rnd}(\tau w_{\min})$, $E_{\tilde w} = E_w + E_{\tau w_{\min}} + \mathrm{rnd}(\tilde w)$.
"""

from __future__ import annotations

import numpy as np

from ..formats import Format
from ..layout import Flat
from .lemmas import rel_product, rnd, sqrt_err, under
from .scalars import const_rel, into_rel, scalar_format

F = np.ndarray


def _scaled_div(x: F, ex: F, bc: float, rho: float) -> F:
    """|x'/b' - x/b| for |x' - x| <= ex and b' within relative rho of b (rho < 1)."""
    if not rho < 1:
        return np.full_like(x, np.inf)
    return np.asarray((ex + np.abs(x) * rho) / (bc * (1.0 - rho)), dtype=np.float64)


def _scaled_mul(x: F, ex: F, k: float, rho: float) -> F:
    """|x' k' - x k| for |x' - x| <= ex and k' within relative rho of k."""
    return np.asarray(k * (ex * (1.0 + rho) + np.abs(x) * rho), dtype=np.float64)


def recip_rho(rho_bc: float, fx: Format) -> float:
    """Relative error of a precomputed ``1/b`` or ``sqrt(b)`` (one more scalar rounding)."""
    return float(rel_product([rho_bc, scalar_format(fx).u]))


def adam_denominator(
    src: F,
    esrc: F,
    bc2: float,
    rho_bc2: float,
    eps: float,
    eps_root: float,
    already_hat: bool,
    fx: Format,
) -> F:
    """Bound of ``sqrt(src/bc2 + eps_root) + eps`` (``src`` already divided when optax's amsgrad
    took the maximum of the bias-corrected v: ``already_hat``)."""
    ri = recip_rho(rho_bc2, fx)
    if already_hat:
        vh, evh = src, esrc
    else:
        vh = src / bc2
        e_div = _scaled_div(src, esrc, bc2, rho_bc2)
        e_rec = _scaled_mul(src, esrc, 1.0 / bc2, ri)
        evh = np.maximum(e_div, e_rec)
        evh = evh + rnd(vh, evh, fx)
    a = vh + eps_root
    ea = evh
    if eps_root > 0:
        ea = evh + eps_root * const_rel(eps_root, fx)
        ea = ea + rnd(a, ea, fx)
    r = np.sqrt(a)
    er = sqrt_err(a, ea)
    er = er + rnd(r, er, fx)
    if not already_hat and eps_root == 0:  # torch: sqrt(v) / sqrt(bc2)
        sq = np.sqrt(src)
        esq = sqrt_err(src, esrc)
        esq = esq + rnd(sq, esq, fx)
        et = _scaled_div(sq, esq, float(np.sqrt(bc2)), ri)
        er = np.maximum(er, et + rnd(r, et, fx))
    den = r + eps
    eden = er + eps * const_rel(eps, fx)
    return np.asarray(eden + rnd(den, eden, fx), dtype=np.float64)


def down_scaling(v: F, ev: F, ce: F, ecq: F, c_hi: F, vs: F, fx: Format) -> F:
    """Bound of ``c v`` per coordinate (``ce``, ``ecq``, ``c_hi`` per coordinate)."""
    with np.errstate(invalid="ignore", over="ignore"):
        prod = ce * ev + v * ecq + ev * ecq
        rng = np.maximum(c_hi * (v + ev) - ce * v, ce * v)
        e = np.minimum(np.where(np.isnan(prod), np.inf, prod), rng)
    return np.asarray(e + rnd(vs, e, fx), dtype=np.float64)


def embedding(vs: F, evs: F, w: F, bc2: float, rho_bc2: float, eps: float, fx: Format) -> F:
    """Bound of ``w = sqrt(vs/bc2 + eps)``, the largest over the orders of the module docstring."""
    ri = recip_rho(rho_bc2, fx)
    a = vs / bc2
    e_div = _scaled_div(vs, evs, bc2, rho_bc2)
    e_rec = _scaled_mul(vs, evs, 1.0 / bc2, ri)
    ea = np.maximum(e_div + rnd(a, e_div, fx), e_rec + rnd(a, e_rec, fx))
    b = a + eps
    eb = ea + eps * const_rel(eps, fx)
    eb = eb + rnd(b, eb, fx)
    ew = sqrt_err(b, eb)
    ew = ew + rnd(w, ew, fx)
    # sqrt(vs + eps bc2') / sqrt(bc2'), with one value bc2' of the bias correction in the step: in
    # units of b = b2/bc2', bc2's error stays on vs/bc2 (as in the division), eps bc2' and
    # sqrt(bc2') add their own roundings, and every absolute error of b2 = vs + eps bc2' (its
    # rounding and underflow excess) is divided by bc2
    s = scalar_format(fx)
    eb2c = eps * bc2
    e_eps = eps * float(rel_product([const_rel(eps, s), s.u, into_rel(eb2c, fx)]))
    b2 = vs + eb2c
    eb_s = e_div + e_eps + (under(eb2c, s) + under(eb2c, fx)) / bc2
    eb_s = eb_s + rnd(b2, eb_s * bc2, fx) / bc2
    esw = sqrt_err(b, eb_s)  # sqrt(b2'/bc2') against w
    e1 = fx.u  # the rounding of sqrt(b2) (its excess below), of sqrt(bc2') in S and into fx:
    e2 = float(rel_product([s.u, into_rel(float(np.sqrt(bc2)), fx)]))
    if e2 < 1:
        grow = (1 + e1) / (1 - e2)
        e_split = esw * grow + w * (grow - 1) + under(np.sqrt(b2), fx) / np.sqrt(bc2)
        e_split = e_split + rnd(w, e_split, fx)
    else:
        e_split = np.full_like(w, np.inf)
    return np.asarray(np.maximum(ew, e_split), dtype=np.float64)


def translation(w: F, ew: F, wt: F, tau: float, flat: Flat, fx: Format) -> F:
    """Bound of ``wt = w - tau min_layer w``."""
    if tau == 0.0:  # w - 0 * w_min = w exactly
        return np.asarray(ew, dtype=np.float64)
    lid = flat.layer_id
    wmin = flat.layer_min(w)
    at_min = w <= wmin[lid]
    e_at = flat.layer_max(np.where(at_min, ew, -np.inf))
    ewmin = min_error(wmin, e_at, flat.layer_min(w - ew), flat.layer_size)
    return translated(ew, wt, tau, wmin[lid], ewmin[lid], fx)


def min_error(wmin: F, e_at: F, low: F, size: F) -> F:
    r"""$E_{w_{\min}}$ per layer from $w_{\min}$, $E_w(\arg\min w)$ (``e_at``, the largest over the
    coordinates at the minimum) and ``low`` $= \min_i(w_i - E_{w,i})$ (module docstring)."""
    with np.errstate(invalid="ignore"):
        drop = wmin - low
        ewmin = np.maximum(e_at, drop)
    ewmin = np.where(np.isnan(ewmin), np.inf, ewmin)
    return np.where(size > 0, ewmin, 0.0)  # an empty layer has no minimum


def translated(ew: F, wt: F, tau: float, wmin: F, ewmin: F, fx: Format) -> F:
    """Bound of ``wt`` from the layer minimum ``wmin`` and its bound ``ewmin`` (per coordinate)."""
    rt = const_rel(tau, fx)
    tw = tau * wmin
    etw = tau * ewmin * (1 + rt) + tw * rt
    etw = etw + rnd(tw, etw, fx)
    e = ew + etw
    return np.asarray(e + rnd(wt, e, fx), dtype=np.float64)
