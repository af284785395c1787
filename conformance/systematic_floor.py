r"""The legitimate systematic part of a step: what correctly rounded common scalars may shift.

A correct port forms a handful of scalars once per step (the step size $s = \mathrm{lr}/b_1$,
$b_2 = 1-\beta_2^t$ or $\sqrt{b_2}$, $\beta_k$ and $1-\beta_k$ as the tensor operations see them,
$\epsilon$, $\tau$, $\lambda$, the decay factor $1-\mathrm{lr}\lambda$) and uses the same rounded
value at every coordinate. Their rounding errors do not average out over coordinates: they shift
every coordinate alike. :func:`legit_bias` bounds, per coordinate, the absolute shift of the
parameters (and of the reported update) that these roundings can cause, from the tolerance
model's own exact scalar errors (:mod:`conformance.tolerance.scalars`, used read-only):

- step size: $\rho_s$, the larger of $\mathrm{fl}(\mathrm{lr}/b_1)$ (lr, $b_1$ with
  ``bias_correction_parts``, one division, the rounding into the dtype) and the m-hat-first order
  ($\rho_\mathrm{lr}$, $\rho_{b_1}$ = ``rho_bias_correction``);
- second bias correction: $\hat v = v/b_2$ enters through a square root, so its relative error
  $\rho_{b_2}$ moves the denominator by at most $\tfrac12\rho_{b_2}/(1-\rho_{b_2})$, plus one rounding
  of $\sqrt{b_2}$ in the scalar format and into the dtype;
- moments from exact inputs: $|\delta m_i| \le \beta_1|m_{0,i}|\rho_{\beta_1} + (1-\beta_1)(|g_i| +
  |m_{0,i}|)\rho_{1-\beta_1}$ (both the two-product and the ``lerp`` forms), the same for $v$
  with $g^2$; $\delta v$ moves the denominator by $\tfrac12\,\delta v_i/v_i$ (relative);
- $\epsilon$: $\epsilon\rho_\epsilon/D_i$ (Adam) or $\tfrac12\epsilon\rho_\epsilon/w_i^2$ (SET-Adam),
  plus its *absorption*: an $\epsilon$ below half an ulp of $\sqrt{\hat v}$ (of $c v/b_2$) is
  rounded away, always in the same direction, a shift of $\min(\epsilon, uD_i)/D_i$
  ($\tfrac12\min(\epsilon, uw_i^2)/w_i^2$), and likewise $\epsilon_r$ inside Adam's root;
- SET-Adam's down-translation $\tilde w = w - \tau w_{\min}$: a relative shift $r$ of $w$ moves
  $\tilde w$ by at most $r_i w_i + \tau r_{\min} w_{\min} + \tau w_{\min}\rho_\tau$ (the layer's
  largest $r$ standing for that of its argmin), i.e. an amplification $(w + \tau w_{\min})/\tilde w$;
- weight decay: L2 adds $\lambda|\theta|\rho_\lambda$ to the gradient (carried into both moments);
  decoupled decay shifts $\theta$ by $|\theta_{t-1}|$ times the larger of torch's factor error
  $|\mathrm{fl}(1-\mathrm{lr}\lambda) - (1-\mathrm{lr}\lambda)|$ and optax's
  $\mathrm{lr}\lambda(\rho_\mathrm{lr} \oplus \rho_\lambda)$.

The bound is first order in these relative errors (each below $2\cdot10^{-5}$ in float32 and
$10^{-12}$ in float64 for the defaults, so the neglected products are below $10^{-5}$ of the
floor itself). Layer statistics $c_l$ and the layer minimum $w_{\min}$ are per-layer, not per-step:
their rounding is treated as noise shared by a layer (the cluster of :mod:`conformance.systematic`),
not as floor.
"""

from __future__ import annotations

import numpy as np

from setadam_ref import AdamConfig, Config, SETAdamConfig

from .formats import FORMATS, Format
from .layout import Flat
from .tolerance.lemmas import rel_product
from .tolerance.records import StepRef
from .tolerance.scalars import (
    bias_correction_parts,
    const_rel,
    into_rel,
    rho_bias_correction,
    rho_lerp_complement,
    rho_one_minus,
    scalar_format,
)

F = np.ndarray


def _rel(*rs: float) -> float:
    """$\\prod(1 + r_i) - 1$ (``rel_product``: formed as the product, 1 + 2^-53 = 1 in float64
    dropped a float64 scalar's one rounding and its floor came out 0)."""
    return float(rel_product(list(rs)))


def _safe_div(a: F, b: F) -> F:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0), dtype=np.float64)


def step_size_rel(lr: float, beta1: float, t: int, fx: Format) -> float:
    """Relative error bound of the step size $s = \\mathrm{lr}/b_1$ as a port may form it."""
    s_fmt = scalar_format(fx)
    s = lr / (1.0 - beta1**t)
    rbc1_s, _ = bias_correction_parts(beta1, t, fx)
    direct = _rel(const_rel(lr, s_fmt), rbc1_s, s_fmt.u, into_rel(s, fx))
    mhat = _rel(const_rel(lr, fx), rho_bias_correction(beta1, t, fx))
    return max(direct, mhat)


def sqrt_b2_rel(beta2: float, t: int, fx: Format) -> float:
    """Relative shift of the denominator by the rounding of $b_2$ (through $\\sqrt{\\cdot}$)."""
    rb = rho_bias_correction(beta2, t, fx)
    if not rb < 1.0:
        return float("inf")
    s_fmt = scalar_format(fx)
    return _rel(0.5 * rb / (1.0 - rb), s_fmt.u, into_rel(1.0, fx))


def _moment_bias(beta: float, x0: F, x_new: F, fs: Format) -> F:
    """|shift| of ``beta x0 + (1 - beta) x_new`` by the roundings of beta and 1 - beta."""
    rb = max(const_rel(beta, fs), rho_lerp_complement(beta, fs))
    return np.asarray(
        beta * np.abs(x0) * rb
        + (1.0 - beta) * (np.abs(x_new) + np.abs(x0)) * rho_one_minus(beta, fs),
        dtype=np.float64,
    )


def legit_bias(
    config: Config, ref: StepRef, flat: Flat, dtype: str, state_dtype: str | None = None
) -> F:
    """Per-coordinate bound of the shift of theta_t by the step's common scalars (module doc)."""
    fx, fs = FORMATS[dtype], FORMATS[state_dtype or dtype]
    b1, b2 = config.betas
    t = ref.t
    lam = config.weight_decay
    decoupled = lam > 0 and config.weight_decay_mode == "decoupled"
    g_bias = np.zeros_like(ref.grad)
    if lam > 0 and not decoupled:
        g_bias = lam * np.abs(ref.theta0) * const_rel(lam, fx)
    g_abs = np.abs(ref.grad)
    dm = _moment_bias(b1, ref.m0, ref.grad, fs) + (1.0 - b1) * g_bias
    dv = _moment_bias(b2, ref.v0, ref.grad**2, fs) + (1.0 - b2) * (2 * g_abs + g_bias) * g_bias
    r_b2 = sqrt_b2_rel(b2, t, fx)
    r_eps = const_rel(config.eps, fx)
    s = config.lr / ref.bias_correction1
    if isinstance(config, AdamConfig):
        den = np.asarray(ref.denom)
        v_use = ref.vmax if ref.vmax is not None else ref.v
        root = np.maximum(den - config.eps, 0.0)
        rel_den = _safe_div(root, den) * (r_b2 + 0.5 * _safe_div(dv, v_use))
        # eps below half an ulp of sqrt(v_hat) is absorbed: a rounding of one sign, -eps
        absorbed = np.minimum(config.eps * (1 + r_eps), fx.u * den)
        rel_den = rel_den + _safe_div(config.eps * r_eps + absorbed, den)
        if config.eps_root > 0:
            vh = np.maximum(root, 0.0) ** 2
            rel_den = rel_den + 0.5 * np.minimum(
                _safe_div(config.eps_root * np.ones_like(vh), vh), fx.u
            )
    else:
        assert isinstance(config, SETAdamConfig)
        w, den = np.asarray(ref.w), np.asarray(ref.w_translated)
        w2 = w * w
        inner = np.maximum(w2 - config.eps, 0.0)  # c v / b2
        rel_w = _safe_div(inner, w2) * (r_b2 + 0.5 * _safe_div(dv, ref.v))
        absorbed = np.minimum(config.eps * (1 + r_eps), fx.u * w2)  # eps absorbed into c v / b2
        rel_w = rel_w + 0.5 * _safe_div(config.eps * r_eps + absorbed, w2)
        tau = config.tau
        lid = flat.layer_id
        w_min = np.full(flat.n_layers, np.inf)
        # fmin/fmax: an array without gradient at this step (NaN in a contract scenario's
        # trace) is not in its layer, and must not void the floor of the arrays that are
        np.fmin.at(w_min, lid, w)
        r_max = np.zeros(flat.n_layers)
        np.fmax.at(r_max, lid, rel_w)
        wm, rm = w_min[lid], r_max[lid]
        with np.errstate(invalid="ignore"):  # NaN where an array has no gradient: left out
            shift = rel_w * w + tau * wm * (rm + const_rel(tau, fx)) if tau > 0 else rel_w * w
            rel_den = _safe_div(shift, den)
    core = s * _safe_div(np.abs(ref.m), den)
    bias = core * (step_size_rel(config.lr, b1, t, fx) + rel_den) + s * _safe_div(dm, den)
    if decoupled:
        bias = bias + np.abs(ref.theta0) * _decay_bias(config.lr, lam, fx)
    return np.asarray(bias, dtype=np.float64)


def floor(
    config: Config, ref: StepRef, flat: Flat, dtype: str, state_dtype: str | None = None
) -> F:
    """The shift the systematic test allows a coordinate of theta_t: the port's common scalars
    rounded in its dtype (:func:`legit_bias`) and the reference's own, in float64 (the same
    bound again where the port's dtype is float64). A contract step calls it once per
    reference call, with that group's config and step count (its lr, betas, decay)."""
    beta = legit_bias(config, ref, flat, dtype, state_dtype)
    if dtype != "float64":
        return np.asarray(beta + legit_bias(config, ref, flat, "float64"), dtype=np.float64)
    return np.asarray(2.0 * beta, dtype=np.float64)


def _decay_bias(lr: float, lam: float, fx: Format) -> float:
    """Absolute error of theta's decay factor per unit |theta| (torch's or optax's order)."""
    s_fmt = scalar_format(fx)
    dec = 1.0 - lr * lam
    e_dec = lr * lam * _rel(const_rel(lr, s_fmt), const_rel(lam, s_fmt), s_fmt.u) + s_fmt.u * dec
    torch_order = abs(dec) * _rel(e_dec / abs(dec), into_rel(dec, fx))
    optax_order = lr * lam * _rel(const_rel(lr, fx), const_rel(lam, fx), fx.u)
    return max(torch_order, optax_order)
