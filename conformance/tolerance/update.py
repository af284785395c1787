r"""Bounds of the update $U = s\,m/D$ ($s = \mathrm{lr}/b_1$, $D$ = denom or $\tilde w$) and of $\theta_t$.

$q = m/D$ carries the input errors by the quotient lemma, $E_q = $ ``div_err``$(m, E_m, D, E_D)$.
A port then forms $U$ in one of the orders

| order | roundings (value: amplification of its underflow excess) |
| --- | --- |
| $s\,(m/D)$ | $q$: $s$; $U$: 1 |
| addcdiv $(s\,m)/D$ | $s\,m$: $1/D$; $U$: 1 |
| stepsize $(s/D)\,m$ | $s/D$: $\lvert m\rvert$; $U$: 1 |
| m-hat first $\mathrm{lr}\,((m/b_1)/D)$ | $m/b_1$: $\mathrm{lr}/D$; $m/(b_1D)$: $\mathrm{lr}$; $U$: 1 |
| FMA $\theta - s\,q$ | $q$: $s$ (the product is not rounded) |

with the constants' relative errors $\rho_s$ (the scalar $s$, possibly rounded into the tensor
format) or $\rho_\mathrm{lr}, \rho_{b_1}$ (m-hat first). For an order with $k$ roundings,

$$E_U = s E_q (1+\rho) + s|q|\rho + \sum_j A_j \max(\eta - u|x_j|, 0),\qquad
\rho = (1+\rho_\text{const})(1+u)^k - 1,$$

and $E_U$ is the largest over the orders ($A_j$ with the port's values bounded: $1/(D - E_D)$,
$|m| + E_m$). Without decay $E_\theta = E^{in}_\theta + E_U + \mathrm{rnd}(\theta_t)$ in the parameter
format. TensorFlow's form folds $k = \sqrt{b_2}$ into the step size, $s = \mathrm{lr}\,k/b_1$
(:class:`Fold`): $\rho_s$ and the m-hat-first $\rho_\mathrm{lr}$ gain $k$'s error and the rounding
of $\mathrm{lr}\,k$. Decoupled decay torch-style multiplies first, $\theta(1-\mathrm{lr}\lambda)$ with the
constant's error $\rho_\delta$; optax-style forms $\mathrm{lr}\,(m/(b_1D) + \lambda\theta)$, whose
$\lambda\theta$ path is carried with exact coefficient $1-\mathrm{lr}\lambda$ on $E^{in}_\theta$.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats import Format
from .lemmas import div_err, rel_product, rnd, under
from .scalars import (
    bias_correction_parts,
    const_rel,
    into_rel,
    rho_bias_correction,
    scalar_format,
)

F = np.ndarray


@dataclass(frozen=True)
class UpdateInputs:
    """The reference values and bounds the update chain starts from (flat arrays)."""

    m: F
    em: F
    den: F
    eden: F
    theta0: F
    etheta: F
    theta1: F
    update: F


def _rel(*rs: float | F) -> F:
    r"""$\prod(1+r_i) - 1$ (:func:`~conformance.tolerance.lemmas.rel_product`, no divisors)."""
    return rel_product(list(rs))


@dataclass(frozen=True)
class Fold:
    r"""A factor $k$ folded into the step size, $s = \mathrm{lr}\,k/b_1$, with the relative
    error $\rho_k$ of its computed value in the scalar format: tf's $k = \sqrt{b_2}$
    (:func:`tf_fold`); $k = 1$, $\rho_k = 0$ is torch's $s = \mathrm{lr}/b_1$."""

    k: float = 1.0
    rho_k: float = 0.0


NO_FOLD = Fold()


def tf_fold(beta2: float, t: int, fx: Format) -> Fold:
    r"""$k = \sqrt{b_2}$ formed in the scalar format $S$: $b_2$ within $\rho_b$
    (:func:`~conformance.tolerance.scalars.bias_correction_parts`), the square root
    contributes $|\sqrt{1\pm\rho_b} - 1| \le \rho_b/(1+\sqrt{1-\rho_b})$ and one rounding."""
    rel_b, _ = bias_correction_parts(beta2, t, fx)
    if not rel_b < 1:
        return Fold(float(np.sqrt(1.0 - beta2**t)), float("inf"))
    rho = float(_rel(rel_b / (1.0 + np.sqrt(1.0 - rel_b)), scalar_format(fx).u))
    return Fold(float(np.sqrt(1.0 - beta2**t)), rho)


def update_core(
    x: UpdateInputs, lr: float, beta1: float, t: int, fx: Format, fold: Fold = NO_FOLD
) -> tuple[F, F]:
    r"""(|U| of the core update s m / D, bound of its error over the orders; U in format fx).

    With a ``fold`` the port forms $\mathrm{lr}\,k$ (one more scalar rounding) wherever the
    orders use lr, so $s$ and the m-hat-first lr carry $\rho_k$ and that rounding."""
    s_fmt = scalar_format(fx)
    u = fx.u
    bc1 = 1.0 - beta1**t
    folded = fold.k != 1.0
    r_fold = float(_rel(fold.rho_k, s_fmt.u)) if folded else 0.0
    lr_k = lr * fold.k
    s = lr_k / bc1
    q = x.m / x.den
    aq = np.abs(q)
    core = s * aq
    eq = div_err(x.m, x.em, x.den, x.eden)
    rbc1_s, _ = bias_correction_parts(beta1, t, fx)
    rho_s = float(_rel(const_rel(lr, s_fmt), r_fold, rbc1_s, s_fmt.u, into_rel(s, fx)))
    rho_lr = float(_rel(const_rel(lr, s_fmt), r_fold, into_rel(lr_k, fx))) if folded else 0.0
    rho_lr = max(rho_lr, const_rel(lr, fx))
    rho_bc1 = rho_bias_correction(beta1, t, fx)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = np.where(x.den > x.eden, 1.0 / (x.den - x.eden), np.inf)
        e_sd = s * inv_d * (rho_s + x.eden * inv_d)  # error of s / D (D within E_D)
    am = np.abs(x.m)
    m_hi = am + x.em
    # each intermediate with the error of its port value, so that an exact zero (m = 0 and
    # E_m = 0) costs no underflow excess
    und_u = under(core, fx, 1.0, s * eq * (1 + rho_s) + core * rho_s)
    und_q = under(aq, fx, s, eq)

    def chain(rho: F | float, *excess: F) -> F:
        return np.asarray(s * eq * (1 + rho) + core * rho + sum(excess), dtype=np.float64)

    r2 = _rel(rho_s, u, u)
    orders = [
        chain(r2, und_q, und_u),  # s * (m / D)
        chain(r2, under(s * am, fx, inv_d, s * (x.em + am * rho_s)), und_u),  # (s m) / D
        chain(r2, under(s / x.den, fx, m_hi, e_sd), und_u),  # (s / D) m
        chain(  # lr ((m / bc1) / D), lr k with a fold
            _rel(rho_lr, rho_bc1, u, u, u),
            under(am / bc1, fx, lr_k * inv_d, (x.em + am * rho_bc1) / bc1),
            under(aq / bc1, fx, lr_k, (eq + aq * rho_bc1) / bc1),
            und_u,
        ),
        chain(_rel(rho_s, u), und_q),  # fma(-s, m / D, theta)
    ]
    e = np.maximum.reduce(orders)
    return core, np.asarray(np.where(np.isnan(e), np.inf, e), dtype=np.float64)


def params_bound(
    x: UpdateInputs,
    lr: float,
    beta1: float,
    t: int,
    wd: float,
    decoupled: bool,
    fx: Format,
    fp: Format,
    fold: Fold = NO_FOLD,
) -> tuple[F, F]:
    """(bound of theta_t, bound of the reported update) in the parameter format ``fp``.

    With a ``fold`` (tf) decoupled decay is torch's order only: TensorFlow and keras decay the
    variable in a pass of its own before the update, never inside optax's sum."""
    _, eu = update_core(x, lr, beta1, t, fx, fold)
    if not decoupled:
        eth = x.etheta + eu
        eth = eth + rnd(x.theta1, eth, fp)
    elif fold.k != 1.0:
        eth = _torch_decay(x, lr, wd, eu, fp)
    else:
        eth = np.maximum(_torch_decay(x, lr, wd, eu, fp), _optax_decay(x, lr, beta1, t, wd, fx, fp))
    eup = eth + x.etheta
    return eth, np.asarray(eup + rnd(x.update, eup, fp), dtype=np.float64)


def _torch_decay(x: UpdateInputs, lr: float, wd: float, eu: F, fp: Format) -> F:
    """theta (1 - lr wd) - U: the decay factor formed in the scalar format, rounded into fp."""
    s = scalar_format(fp)
    dec = 1.0 - lr * wd
    e_dec = lr * wd * float(_rel(const_rel(lr, s), const_rel(wd, s), s.u)) + s.u * abs(dec)
    r_dec = float(_rel(e_dec / abs(dec), into_rel(dec, fp)))
    base = x.theta0 * dec
    e_base = abs(dec) * x.etheta * (1 + r_dec) + np.abs(base) * r_dec
    e_base = e_base + rnd(base, e_base, fp)
    e = e_base + eu
    return np.asarray(e + rnd(x.theta1, e, fp), dtype=np.float64)


def _optax_decay(
    x: UpdateInputs, lr: float, beta1: float, t: int, wd: float, fx: Format, fp: Format
) -> F:
    """theta - lr (m/(bc1 D) + wd theta), the wd-theta path with exact coefficient on E_theta."""
    u = fx.u
    bc1 = 1.0 - beta1**t
    q = x.m / x.den
    aq = np.abs(q)
    eq = div_err(x.m, x.em, x.den, x.eden)
    rho_bc1 = rho_bias_correction(beta1, t, fx)
    rho_lr, rho_wd = const_rel(lr, fx), const_rel(wd, fx)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = np.where(x.den > x.eden, 1.0 / (x.den - x.eden), np.inf)
    r_mh = _rel(rho_bc1, u, u)
    am = np.abs(x.m)
    e_mh = eq / bc1 * (1 + r_mh) + aq / bc1 * r_mh
    e_mh = (
        e_mh
        + under(am / bc1, fx, inv_d, (x.em + am * rho_bc1) / bc1)
        + under(aq / bc1, fx, 1.0, e_mh)
    )
    wt = wd * x.theta0
    r_wd = _rel(rho_wd, u)
    e_in = wd * x.etheta * (1 + r_wd)
    e_wt = np.abs(wt) * r_wd + under(wt, fx, 1.0, e_in)  # E_theta_in is carried exactly below
    z = q / bc1 + wt
    e_z = e_mh + e_wt
    e_z = e_z + rnd(z, e_z + e_in, fx)
    r_l = _rel(rho_lr, u)
    e_u = lr * e_z * (1 + r_l) + lr * np.abs(z) * r_l
    e_u = e_u + under(lr * z, fx, 1.0, e_u + lr * e_in)
    # the input error of theta enters as (1 - lr wd) theta' plus the roundings of its lr wd path
    lin = abs(1.0 - lr * wd) + lr * wd * float(_rel(r_wd, u, r_l))
    e = lin * x.etheta + e_u
    return np.asarray(e + rnd(x.theta1, e, fp), dtype=np.float64)
