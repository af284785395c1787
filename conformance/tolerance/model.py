r"""The tolerance model's entry points: the bounds of one step, and the comparison budget.

:func:`step_bounds` composes the stages (:mod:`~conformance.tolerance.moments`,
:mod:`~conformance.tolerance.statistics`, :mod:`~conformance.tolerance.stages`,
:mod:`~conformance.tolerance.update`) for one step in a dtype: the gradient and the parameters in
the parameter format, $m$, $v$ (and $v^{\max}$) in the *state* format, every intermediate of the
denominator and the update in the coarser of the two (a port may compute them in either).
:func:`comparison_bounds` adds the reference's own float64 bound (triangle inequality):
$B = B_\text{port} + B_\text{ref}$.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from setadam_ref import AdamConfig, Config, SETAdamConfig

from ..formats import Format, fmt
from ..layout import Flat
from .moments import grad_bound, m_bound, v_bound, vhat_max_bound
from .records import Bounds, InputErrors, StepRef
from .scalars import rho_bias_correction
from .stages import adam_denominator, down_scaling, embedding, translated, translation
from .statistics import RangeNote, statistics_bounds
from .update import NO_FOLD, UpdateInputs, params_bound, tf_fold

F = np.ndarray


def coarser(a: Format, b: Format) -> Format:
    """The format with the larger unit roundoff (on a tie, the one with the smaller range)."""
    if a.p != b.p:
        return a if a.p < b.p else b
    return a if a.emin >= b.emin else b


@dataclass(frozen=True)
class LayerTerms:
    r"""SET-Adam's layer-wide terms per coordinate of a chunk of one layer: $c_l$, the bounds of
    the down-scaling (:class:`~conformance.tolerance.statistics.StatisticsBounds`' ``ecq``,
    ``c_hi``) and the layer minimum $w_{\min}$ with its bound (None when $\tau = 0$)."""

    cos2: F
    ecq: F
    c_hi: F
    wmin: F | None = None
    ewmin: F | None = None


def formats(dtype: str, state_dtype: str | None) -> tuple[Format, Format, Format]:
    """(parameter format, state format, format of the intermediates: the coarser)."""
    fp, fs = fmt(dtype), fmt(state_dtype or dtype)
    return fp, fs, coarser(fp, fs)


def grad_v_bounds(
    config: Config, ref: StepRef, ein: InputErrors, fp: Format, fs: Format
) -> tuple[F, F]:
    """(bound of the effective gradient, bound of $v$): what the layer statistics read."""
    wd = config.weight_decay
    l2 = wd > 0 and config.weight_decay_mode == "l2"
    eg_in = np.zeros(ref.theta0.size) if ein.grad is None else ein.grad
    eg = grad_bound(ref.grad, ref.theta0, eg_in, ein.theta, wd, l2, fp)
    return eg, v_bound(ref.v0, ein.v, ref.grad, eg, ref.v, config.betas[1], fs)


def embedded(
    config: SETAdamConfig, ref: StepRef, ev: F, cos2: F, ecq: F, c_hi: F, fx: Format
) -> tuple[F, F]:
    """(bound of the down-scaling $c v$, of the embedding $w$), layer terms per coordinate."""
    assert ref.v_scaled is not None and ref.w is not None
    rho2 = rho_bias_correction(config.betas[1], ref.t, fx)
    evs = down_scaling(ref.v, ev, cos2, ecq, c_hi, ref.v_scaled, fx)
    return evs, embedding(ref.v_scaled, evs, ref.w, ref.bias_correction2, rho2, config.eps, fx)


def step_bounds(
    config: Config,
    ref: StepRef,
    flat: Flat,
    dtype: str,
    inputs: InputErrors | None = None,
    state_dtype: str | None = None,
) -> Bounds:
    """Absolute error bounds of every quantity of the step ``ref`` computed in ``dtype``, with the
    moments kept in ``state_dtype`` (default: ``dtype``)."""
    return _step_bounds(config, ref, dtype, inputs, state_dtype, flat, None)


def chunk_bounds(
    config: Config,
    ref: StepRef,
    dtype: str,
    inputs: InputErrors,
    state_dtype: str | None,
    terms: LayerTerms | None,
) -> Bounds:
    """:func:`step_bounds` of a chunk of coordinates of one layer, SET-Adam's layer terms given
    (``terms``; ``cos2``, per layer, is not among the result): the same elementwise operations
    on the same values, so bitwise the full step's bounds there (conformance.tolerance.chunked)."""
    return _step_bounds(config, ref, dtype, inputs, state_dtype, None, terms)


def _step_bounds(
    config: Config,
    ref: StepRef,
    dtype: str,
    inputs: InputErrors | None,
    state_dtype: str | None,
    flat: Flat | None,
    terms: LayerTerms | None,
) -> Bounds:
    fp, fs, fx = formats(dtype, state_dtype)
    n = ref.theta0.size
    ein = inputs if inputs is not None else InputErrors.zeros(n)
    b1, b2 = config.betas
    t = ref.t
    wd = config.weight_decay
    decoupled = wd > 0 and config.weight_decay_mode == "decoupled"
    bc2 = ref.bias_correction2
    out: dict[str, F] = {}
    with np.errstate(all="ignore"):
        eg, ev = grad_v_bounds(config, ref, ein, fp, fs)
        out["grad"] = eg
        em = m_bound(ref.m0, ein.m, ref.grad, eg, ref.m, b1, fs)
        out["m"], out["v"] = em, ev
        rho2 = rho_bias_correction(b2, t, fx)
        if isinstance(config, AdamConfig):
            assert ref.denom is not None
            src, esrc, hat = ref.v, ev, False
            if config.amsgrad:
                assert ref.vmax is not None and ref.vmax0 is not None
                evmax0 = ein.vmax if ein.vmax is not None else np.zeros(n)
                if config.amsgrad_mode == "torch":
                    evmax = np.maximum(evmax0, ev)
                else:  # optax: the maximum is over bias-corrected v
                    rs2 = rho_bias_correction(b2, t, fs)
                    evmax = vhat_max_bound(ref.v, ev, evmax0, bc2, rs2, fs)
                    hat = True
                out["vmax"] = evmax
                src, esrc = ref.vmax, evmax
            fold = NO_FOLD
            if config.eps_mode == "tf":  # sqrt of the unscaled v; sqrt(b2) is in the step size
                hat, fold = True, tf_fold(b2, t, fx)
            eden = adam_denominator(src, esrc, bc2, rho2, config.eps, config.eps_root, hat, fx)
            out["denom"] = eden
            den = ref.denom
        else:
            assert isinstance(config, SETAdamConfig)
            assert ref.cos2 is not None and ref.w is not None and ref.w_translated is not None
            if terms is None:
                assert flat is not None
                sb = statistics_bounds(ref.v, ev, ref.cos2, flat, fx)
                out["cos2"] = sb.ec
                lid = flat.layer_id
                evs, ew = embedded(config, ref, ev, ref.cos2[lid], sb.ecq[lid], sb.c_hi[lid], fx)
                ewt = translation(ref.w, ew, ref.w_translated, config.tau, flat, fx)
            else:
                evs, ew = embedded(config, ref, ev, terms.cos2, terms.ecq, terms.c_hi, fx)
                ewt = ew
                if config.tau != 0.0:
                    assert terms.wmin is not None and terms.ewmin is not None
                    ewt = translated(ew, ref.w_translated, config.tau, terms.wmin, terms.ewmin, fx)
            out["down_scaling"] = evs
            out["epsilon_embedding"] = ew
            out["down_translating"] = ewt
            den, eden, fold = ref.w_translated, ewt, NO_FOLD
        x = UpdateInputs(ref.m, em, den, eden, ref.theta0, ein.theta, ref.theta1, ref.update)
        eth, eup = params_bound(x, config.lr, b1, t, wd, decoupled, fx, fp, fold)
        out["params"], out["update"] = eth, eup
    for k, val in out.items():
        out[k] = np.where(np.isnan(val), np.inf, val)
    return Bounds(out)


def comparison_bounds(
    config: Config,
    ref: StepRef,
    flat: Flat,
    dtype: str,
    port_inputs: InputErrors | None = None,
    ref_inputs: InputErrors | None = None,
    state_dtype: str | None = None,
) -> tuple[Bounds, Bounds, Bounds]:
    """Budget of |port - reference|: the port's bound in ``dtype`` (moments in ``state_dtype``)
    plus the reference's own float64 rounding (triangle inequality). Returns (total, port part,
    reference part); the parts feed the next step of a free-running recursion."""
    bp = step_bounds(config, ref, flat, dtype, port_inputs, state_dtype)
    if dtype == "float64" and (state_dtype or dtype) == "float64":  # both sides round alike
        return bp.scaled(2.0), bp, bp
    br = step_bounds(config, ref, flat, "float64", ref_inputs)
    return bp + br, bp, br


def statistics_range(
    config: Config,
    ref: StepRef,
    flat: Flat,
    dtype: str,
    inputs: InputErrors | None = None,
    state_dtype: str | None = None,
) -> list[RangeNote]:
    """Layers whose statistics an unscaled (or narrow) evaluation cannot keep in range.

    The model covers such an evaluation only where its intermediates stay normal and finite;
    elsewhere a port must rescale its layer sums (the stated assumption, docs/numerics/
    tolerance.md). A failure of a port in a layer listed here, for the evaluation named, is
    "unscaled statistics" rather than a budget failure. Empty for Adam.
    """
    if not isinstance(config, SETAdamConfig) or ref.cos2 is None:
        return []
    fp, fs, fx = formats(dtype, state_dtype)
    ein = inputs if inputs is not None else InputErrors.zeros(ref.theta0.size)
    with np.errstate(all="ignore"):
        ev = grad_v_bounds(config, ref, ein, fp, fs)[1]
        notes = statistics_bounds(ref.v, ev, ref.cos2, flat, fx).notes
    b2 = config.betas[1]
    out = []
    for nt in notes:
        msg = nt.message
        if nt.v_needed == nt.v_needed and nt.v_needed > 0 and b2 < 1:  # not nan
            g = float(np.sqrt(nt.v_needed / (1.0 - b2)))
            side = "underflow for |g| below" if "underflow" in msg else "overflow for |g| above"
            msg += f" (from zero state, v = (1 - beta2) g^2: {side} {g:.2g})"
        out.append(dataclasses.replace(nt, message=msg))
    return out
