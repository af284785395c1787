"""The float64 reference against an independent mpmath evaluation (60 digits) of the same formulas.

Two checks per drawn case (1-20 steps, small layers), with the bounds derived in
docs/src/numerics/reference-error.md:

- stage-local (``#per-step-bounds``): every traced intermediate of every step is compared with
  the exact value of that stage's formula evaluated on the reference's own float64 inputs to the
  stage; the error stays within a fixed number of units of roundoff u = 2^-53 (so within that
  many ulps);
- trajectory (``#trajectory-bounds``): the parameters of the float64 trajectory are compared
  with an exact trajectory from the same float64 initial point and gradients; the error stays
  within the running bound accumulated step by step.

Nothing here calls setadam_ref arithmetic: the reference is run, its outputs are read, and the
formulas are evaluated again with mpmath.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import setadam_ref as sr
from property_tests import strategies as S
from property_tests._exact import DPS, U, cos2_mp, gamma, mp
from property_tests.profiles import examples

mpmath.mp.dps = DPS

#: libm accuracy assumed for log1p/log/expm1 (1 ulp each = 2u) -> bias corrections within 8u.
BC_ULPS = 8


def _betas() -> st.SearchStrategy[float]:
    # no tiny positive betas: beta * m must not underflow (the bounds are for normal numbers)
    return S.betas().filter(lambda b: b == 0.0 or b >= 1e-6)


Case = tuple[S.Structure, sr.SETAdamConfig, tuple[np.ndarray, ...], list[tuple[np.ndarray, ...]]]


@st.composite
def _cases(draw: st.DrawFn) -> Case:
    structure = draw(
        S.structures(max_arrays=4, kinds=("scalar", "one", "empty", "small")), label="structure"
    )
    mode = draw(st.sampled_from(["none", "decoupled", "l2"]), label="weight_decay_mode")
    cfg = sr.SETAdamConfig(
        lr=draw(S.learning_rates(), label="lr"),
        betas=(draw(_betas(), label="beta1"), draw(_betas(), label="beta2")),
        eps=draw(S.epsilons(), label="eps"),
        tau=draw(S.taus(), label="tau"),
        weight_decay=0.0 if mode == "none" else draw(st.floats(1e-6, 1.0), label="wd"),
        weight_decay_mode="decoupled" if mode == "decoupled" else "l2",
        maximize=draw(st.booleans(), label="maximize"),
    )
    n_steps = draw(st.integers(1, 20), label="n_steps")
    params = draw(S.parameters(structure, min_exp=-5, max_exp=5), label="theta0")
    stream = draw(S.gradient_streams(structure, n_steps, min_exp=-60, max_exp=60), label="grads")
    return structure, cfg, params, stream


def _bc(beta: float, t: int) -> mpmath.mpf:
    return 1 - mp(beta) ** t


def _check(err: mpmath.mpf, bound: mpmath.mpf, what: str, ratios: dict[str, float]) -> None:
    r = float(err / bound) if bound > 0 else (0.0 if err == 0 else math.inf)
    ratios[what] = max(ratios.get(what, 0.0), r)
    assert err <= bound, f"{what}: error {mpmath.nstr(err, 5)} > bound {mpmath.nstr(bound, 5)}"


def check_case(
    structure: S.Structure,
    cfg: sr.SETAdamConfig,
    params: tuple[np.ndarray, ...],
    stream: list[tuple[np.ndarray, ...]],
    ratios: dict[str, float],
) -> None:
    """Run the reference with trace and check stage-local and trajectory bounds."""
    traj = sr.run(params, stream, cfg, layers=structure.layers, trace=True)
    assert traj.traces is not None
    b1, b2 = cfg.betas
    tau, eps, lr, lam = mp(cfg.tau), mp(cfg.eps), mp(cfg.lr), mp(cfg.weight_decay)
    l2 = cfg.weight_decay_mode == "l2"
    sign = -1 if cfg.maximize else 1
    layers = structure.layer_list()
    n = len(params)
    flat0 = [[mp(x) for x in np.ravel(p)] for p in params]
    # exact trajectory state and its running error bounds (trajectory check: no l2 feedback)
    ex_p = [list(p) for p in flat0]
    ex_m = [[mp(0)] * len(p) for p in flat0]
    ex_v = [[mp(0)] * len(p) for p in flat0]
    mu = [[mp(0)] * len(p) for p in flat0]  # running magnitude of m
    e_p = [[mp(0)] * len(p) for p in flat0]  # error bound of theta
    traj_check = not (l2 and cfg.weight_decay > 0)
    decay = 1 - lr * lam if cfg.weight_decay_mode == "decoupled" else mp(1)
    decay_err = (2 * U * decay + U * lr * lam) if cfg.weight_decay_mode == "decoupled" else mp(0)

    for t in range(1, len(stream) + 1):
        tr = traj.traces[t - 1]
        assert isinstance(tr, sr.SETAdamTrace) and tr.t == t
        prev = traj.states[t - 1]
        p_prev = traj.params[t - 1]
        g_in = stream[t - 1]
        # --- bias corrections (docs #bias-corrections)
        bc1, bc2 = _bc(b1, t), _bc(b2, t)
        _check(abs(mp(tr.bias_correction1) - bc1), BC_ULPS * U * bc1, "bias_correction1", ratios)
        _check(abs(mp(tr.bias_correction2) - bc2), BC_ULPS * U * bc2, "bias_correction2", ratios)
        bc1f, bc2f = mp(tr.bias_correction1), mp(tr.bias_correction2)
        # --- stage-local checks, array by array
        c_of: dict[int, mpmath.mpf] = {}
        wmin_of: dict[int, mpmath.mpf] = {}
        for k, layer in enumerate(layers):
            stats = tr.layers[k]
            v_layer = [mp(x) for i in layer for x in np.ravel(tr.v[i])]
            d = len(v_layer)
            if d == 0:
                continue
            c_ex = cos2_mp(v_layer)
            _check(abs(mp(stats.cos2) - c_ex), gamma(3 * d + 4) * c_ex, "cos2", ratios)
            w_all = [x for i in layer for x in np.ravel(tr.w[i])]
            assert stats.w_min == min(w_all)
            for i in layer:
                c_of[i], wmin_of[i] = mp(stats.cos2), mp(stats.w_min)
        for i in range(n):
            size = int(np.size(p_prev[i]))
            if size == 0:
                continue
            th = [mp(x) for x in np.ravel(p_prev[i])]
            g = [mp(x) for x in np.ravel(g_in[i])]
            gf = [mp(x) for x in np.ravel(tr.grad[i])]
            mp_prev = [mp(x) for x in np.ravel(prev.m[i])]
            vp_prev = [mp(x) for x in np.ravel(prev.v[i])]
            mf = [mp(x) for x in np.ravel(tr.m[i])]
            vf = [mp(x) for x in np.ravel(tr.v[i])]
            vsf = [mp(x) for x in np.ravel(tr.v_scaled[i])]
            wf = [mp(x) for x in np.ravel(tr.w[i])]
            wtf = [mp(x) for x in np.ravel(tr.w_translated[i])]
            af = [mp(x) for x in np.ravel(tr.stepsize[i])]
            pf = [mp(x) for x in np.ravel(traj.params[t][i])]
            for j in range(size):
                # effective gradient
                g_ex = sign * g[j] + (lam * th[j] if l2 else 0)
                g_bound = gamma(2) * (abs(g[j]) + lam * abs(th[j])) if l2 else mp(0)
                _check(abs(gf[j] - g_ex), g_bound, "grad", ratios)
                # moments
                m_ex = mp(b1) * mp_prev[j] + (1 - mp(b1)) * gf[j]
                m_mag = mp(b1) * abs(mp_prev[j]) + (1 - mp(b1)) * abs(gf[j])
                _check(abs(mf[j] - m_ex), gamma(3) * m_mag, "m", ratios)
                v_ex = mp(b2) * vp_prev[j] + (1 - mp(b2)) * gf[j] ** 2
                _check(abs(vf[j] - v_ex), gamma(4) * v_ex, "v", ratios)
                # (S) (E) (T)
                vs_ex = c_of[i] * vf[j]
                _check(abs(vsf[j] - vs_ex), U * vs_ex, "v_scaled", ratios)
                w_ex = mpmath.sqrt(vsf[j] / bc2f + eps)
                _check(abs(wf[j] - w_ex), gamma(2) * w_ex, "w", ratios)
                wt_ex = wf[j] - tau * wmin_of[i]
                _check(
                    abs(wtf[j] - wt_ex), U / (1 - tau) * (1 + 4 * U) * wt_ex, "w_translated", ratios
                )
                a_ex = lr / bc1f / wtf[j]
                _check(abs(af[j] - a_ex), gamma(2) * a_ex, "stepsize", ratios)
                # update: theta_t = theta_{t-1} decay - (lr/bc1) m / wt
                upd = lr / bc1f * mf[j] / wtf[j]
                p_ex = th[j] * decay - upd
                p_bound = U * abs(p_ex) + gamma(3) * abs(upd) * (1 + U) + abs(th[j]) * decay_err
                _check(abs(pf[j] - p_ex), p_bound * (1 + 4 * U), "theta", ratios)
        if not traj_check:
            continue
        # --- exact trajectory step and its error bound (docs #trajectory-bounds)
        dv = gamma(4 * t)  # relative error of v_t
        ex_w: list[list[mpmath.mpf]] = [[] for _ in range(n)]
        dwt: dict[int, mpmath.mpf] = {}
        for i in range(n):
            g = [sign * mp(x) for x in np.ravel(g_in[i])]
            for j in range(len(g)):
                ex_m[i][j] = mp(b1) * ex_m[i][j] + (1 - mp(b1)) * g[j]
                ex_v[i][j] = mp(b2) * ex_v[i][j] + (1 - mp(b2)) * g[j] ** 2
                mu[i][j] = mp(b1) * mu[i][j] + (1 - mp(b1)) * abs(g[j])
        for layer in layers:
            v_layer = [x for i in layer for x in ex_v[i]]
            d = len(v_layer)
            if d == 0:
                continue
            c = cos2_mp(v_layer)
            dc = mp(4.01) * dv + gamma(3 * d + 4)
            dw = (dc + dv + BC_ULPS * U + 3 * U) / 2 + U
            w_layer = [mpmath.sqrt(c * x / bc2 + eps) for x in v_layer]
            wmin = min(w_layer)
            for i in layer:
                ex_w[i] = [mpmath.sqrt(c * x / bc2 + eps) - tau * wmin for x in ex_v[i]]
                dwt[i] = dw * (1 + tau) / (1 - tau) + U / (1 - tau)
        for i in range(n):
            pf = [mp(x) for x in np.ravel(traj.params[t][i])]
            for j in range(len(ex_p[i])):
                upd = lr / bc1 * ex_m[i][j] / ex_w[i][j]
                mag = lr / bc1 * mu[i][j] / ex_w[i][j]
                e_u = gamma(3 * t) * mag + abs(upd) * (dwt[i] + BC_ULPS * U + 3 * U)
                th_prev = ex_p[i][j]
                ex_p[i][j] = th_prev * decay - upd
                e_p[i][j] = (
                    decay * e_p[i][j]
                    + e_u * (1 + 2 * dwt[i])
                    + U * abs(ex_p[i][j])
                    + abs(th_prev) * decay_err
                )
                _check(abs(pf[j] - ex_p[i][j]), e_p[i][j] * (1 + mp(1e-6)), "trajectory", ratios)


#: Largest error/bound ratio seen per quantity in this session (reported in the docs page).
OBSERVED: dict[str, float] = {}


@settings(max_examples=examples(25))
@given(case=_cases())
def test_reference_within_derived_ulp_bounds(
    case: Case,
) -> None:
    """Float64 reference vs 60-digit mpmath, 1-20 steps: each stage within its derived bound in
    units of u (ulps), and the trajectory within the accumulated bound.

    Proof: docs/src/numerics/reference-error.md#per-step-bounds and
    docs/src/numerics/reference-error.md#trajectory-bounds (mpmath check:
    docs/src/numerics/reference-error.md#mpmath-check)
    """
    structure, cfg, params, stream = case
    check_case(structure, cfg, params, stream, OBSERVED)


def test_reference_error_typical_case() -> None:
    """A deterministic typical case (defaults, 20 steps, layers of 1-8 entries) within the bounds.

    Proof: docs/src/numerics/reference-error.md#mpmath-check
    """
    rng = np.random.default_rng(20260101)
    structure = S.Structure(((8,), (3,), (), (2, 2)), ((0, 2), (1,), (3,)))
    params = tuple(rng.normal(size=s) for s in structure.shapes)
    stream = [tuple(rng.normal(size=s) * 1e-3 for s in structure.shapes) for _ in range(20)]
    ratios: dict[str, float] = {}
    check_case(structure, sr.SETAdamConfig(), params, stream, ratios)
    assert ratios["trajectory"] < 1.0
