"""Tolerance model: rigorous per-coordinate error bounds for one step of Adam / SET-Adam in a dtype.

The derivation is in docs/src/numerics/tolerance.md; the symbols here follow it. In short: every
quantity of a step is computed from the reference values along the step (the exact float64
trace), and its *absolute* error bound ``E`` is propagated stage by stage with

- one rounding ``u |x|`` (plus ``eta`` below the normal range) per floating-point operation, the
  operation count taken as the largest over the known arithmetic orders (torch for-loop, foreach,
  fused; optax; ours);
- hyperparameters rounded to the dtype (relative ``u``), ``1 - beta`` formed from a rounded beta
  (relative ``u_s beta/(1-beta)``) and bias corrections ``1 - beta^t`` formed in at least float32
  (relative ``gamma_{t+1} beta^t/(1-beta^t)``);
- layer sums of non-negative terms with the recursive-summation bound ``gamma_{d_l - 1}`` of the
  accumulation format (float32 for half formats);
- rigorous bounds for the non-linear steps: ``|sqrt(a') - sqrt(a)| <= min(E/sqrt(a), sqrt(E))``,
  ``|x'/y' - x/y| <= (E_x|y| + |x|E_y)/(|y|(|y| - E_y))``, ``|min x' - min x| <=`` the larger of
  the error at the argmin and the drop of the perturbed minimum, ``c_l`` confined to
  ``[1/d_l, 1]``, ``c_l v`` confined to ``[0, v + E_v]``.

Inputs may carry errors (``InputErrors``): zero for a per-step re-synced comparison (the harness
casts the reference state to the port's dtype and computes the reference from those cast values),
the previous step's output bounds for free-running (so the bound of a trajectory is the
composition of one-step bounds along the reference trajectory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from setadam_ref import AdamConfig, Config, SETAdamConfig, State
from setadam_ref.trace import AdamTrace, SETAdamTrace, Trace

from .formats import Format, fmt, gamma
from .layout import Flat

F = np.ndarray

#: quantities the model bounds (flat float64 arrays of all coordinates, except "cos2": per layer)
QUANTITIES: tuple[str, ...] = (
    "grad",
    "m",
    "v",
    "vmax",
    "denom",
    "down_scaling",
    "epsilon_embedding",
    "down_translating",
    "update",
    "params",
    "cos2",
)


@dataclass
class StepRef:
    """Reference values of one step, flattened (float64, exact reference arithmetic)."""

    t: int
    theta0: F
    m0: F
    v0: F
    vmax0: F | None
    grad: F  # effective gradient (after maximize / l2)
    m: F
    v: F
    vmax: F | None
    theta1: F
    update: F
    bias_correction1: float
    bias_correction2: float
    denom: F | None = None  # Adam
    cos2: F | None = None  # SET-Adam: per layer
    v_scaled: F | None = None
    w: F | None = None
    w_translated: F | None = None

    @staticmethod
    def from_trace(
        flat: Flat,
        params: Sequence[np.ndarray],
        state: State,
        new_params: Sequence[np.ndarray],
        trace: Trace,
    ) -> StepRef:
        c = flat.cat
        common = dict(
            t=int(trace.t),
            theta0=c(params),
            m0=c(state.m),
            v0=c(state.v),
            vmax0=None if state.vmax is None else c(state.vmax),
            grad=c(trace.grad),
            m=c(trace.m),
            v=c(trace.v),
            theta1=c(new_params),
            update=c(trace.update),
            bias_correction1=float(trace.bias_correction1),
            bias_correction2=float(trace.bias_correction2),
        )
        if isinstance(trace, AdamTrace):
            return StepRef(
                vmax=None if trace.vmax is None else c(trace.vmax),
                denom=c(trace.denom),
                **common,  # type: ignore[arg-type]
            )
        assert isinstance(trace, SETAdamTrace)
        return StepRef(
            vmax=None,
            cos2=np.array([s.cos2 for s in trace.layers], dtype=np.float64),
            v_scaled=c(trace.v_scaled),
            w=c(trace.w),
            w_translated=c(trace.w_translated),
            **common,  # type: ignore[arg-type]
        )


@dataclass
class InputErrors:
    """Absolute error bounds of a step's inputs (flat); all zero for a re-synced step."""

    theta: F
    m: F
    v: F
    vmax: F | None = None
    grad: F | None = None  # error of the raw gradient (closed loop), None = exact

    @staticmethod
    def zeros(n: int, amsgrad: bool = False) -> InputErrors:
        z = np.zeros(n)
        return InputErrors(z, z, z, z if amsgrad else None)


@dataclass
class Bounds:
    """Absolute error bounds of every quantity of one step (flat arrays; ``cos2`` per layer)."""

    values: dict[str, F] = field(default_factory=dict)

    def __getitem__(self, k: str) -> F:
        return self.values[k]

    def __contains__(self, k: object) -> bool:
        return k in self.values

    def __add__(self, other: Bounds) -> Bounds:
        return Bounds({k: v + other.values[k] for k, v in self.values.items()})

    def scaled(self, factor: float) -> Bounds:
        return Bounds({k: v * factor for k, v in self.values.items()})

    def next_inputs(self) -> InputErrors:
        """Input errors of the next step of a free-running trajectory (open loop)."""
        v = self.values
        return InputErrors(v["params"], v["m"], v["v"], v.get("vmax"))


def _div_err(x: F, ex: F, y: F, ey: F) -> F:
    """Rigorous bound of |x'/y' - x/y| for |x'-x| <= ex, |y'-y| <= ey (inf when y may vanish)."""
    ay = np.abs(y)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        room = ay - ey
        out = (ex * ay + np.abs(x) * ey) / (ay * room)
        out = np.where(room > 0, out, np.inf)
        out = np.where((ex == 0) & (ey == 0), 0.0, out)
    return np.asarray(out, dtype=np.float64)


def _sqrt_err(a: F, ea: F) -> F:
    """Rigorous bound of |sqrt(a') - sqrt(a)| for |a' - a| <= ea, a >= 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lin = np.where(a > 0, ea / np.sqrt(np.maximum(a, 0.0)), np.inf)
    return np.asarray(np.minimum(lin, np.sqrt(ea)), dtype=np.float64)


def scalar_u(f: Format) -> float:
    """Unit roundoff of scalar (hyperparameter, bias-correction) arithmetic: at least float32."""
    return min(f.u, 2.0**-24)


def rho_one_minus(beta: float, f: Format) -> float:
    """Relative error bound of ``1 - beta`` as a port may form it in ``f``.

    beta rounded in the scalar format (relative u_s), the difference exact by Sterbenz or rounded
    once, the result rounded into the dtype: u + u_s beta / (1 - beta).
    """
    return f.u + scalar_u(f) * beta / (1.0 - beta)


def rho_bias_correction(beta: float, t: int, f: Format) -> float:
    """Relative error bound of ``1 - beta^t`` formed from a rounded beta in the scalar format."""
    us = scalar_u(f)
    bt = beta**t
    bc = 1.0 - bt
    if bc <= 0.0:
        return float("inf")
    return gamma(t + 1, us) * bt / bc + f.u


def step_bounds(
    config: Config,
    ref: StepRef,
    flat: Flat,
    dtype: str,
    inputs: InputErrors | None = None,
) -> Bounds:
    """Absolute error bounds of every quantity of the step ``ref`` computed in ``dtype``."""
    f = fmt(dtype)
    u, eta = f.u, f.eta
    n = ref.theta0.size
    ein = inputs if inputs is not None else InputErrors.zeros(n)
    b1, b2 = config.betas
    t = ref.t
    lr, wd = config.lr, config.weight_decay
    l2 = wd > 0 and config.weight_decay_mode == "l2"
    decoupled = wd > 0 and config.weight_decay_mode == "decoupled"
    rho1, rho2 = rho_one_minus(b1, f), rho_one_minus(b2, f)
    rbc1, rbc2 = rho_bias_correction(b1, t, f), rho_bias_correction(b2, t, f)
    bc1, bc2 = ref.bias_correction1, ref.bias_correction2
    out: dict[str, F] = {}

    ge = ref.grad
    age = np.abs(ge)
    eg = np.zeros(n) if ein.grad is None else ein.grad
    if l2:
        eg = eg + wd * ein.theta + 2 * u * np.abs(wd * ref.theta0) + u * age + eta
    out["grad"] = eg

    # first moment: covers b1*m + (1-b1)*g and the lerp form m + (1-b1)*(g - m)
    em = (
        b1 * ein.m
        + (1 - b1) * eg
        + 2 * u * np.abs(ref.m0)
        + (1 - b1) * age * (rho1 + 2 * u)
        + u * np.abs(ref.m)
        + 3 * eta
    )
    out["m"] = em
    # second moment: b2*v + (1-b2)*g*g (addcmul: product, scale, add)
    ev = (
        b2 * ein.v
        + (1 - b2) * (2 * age * eg + eg * eg)
        + 2 * u * ref.v0
        + (1 - b2) * ge * ge * (rho2 + 3 * u)
        + u * ref.v
        + 3 * eta
    )
    out["v"] = ev

    if isinstance(config, AdamConfig):
        assert ref.denom is not None
        if config.amsgrad:
            assert ref.vmax is not None and ref.vmax0 is not None
            evmax0 = ein.vmax if ein.vmax is not None else np.zeros(n)
            if config.amsgrad_mode == "torch":
                evmax = np.maximum(evmax0, ev)
                vv, evv = ref.vmax, evmax
                vhat = vv / bc2
                evhat = (evv + vv * (rbc2 + u)) / bc2 + eta
            else:  # optax: the maximum is over bias-corrected v
                evhat_new = (ev + ref.v * (rbc2 + u)) / bc2 + eta
                evmax = np.maximum(evmax0, evhat_new)
                vhat, evhat = ref.vmax, evmax
            out["vmax"] = evmax
        else:
            vhat = ref.v / bc2
            evhat = (ev + ref.v * (rbc2 + u)) / bc2 + eta
        a = vhat + config.eps_root
        ea = evhat + u * a + u * config.eps_root + eta
        r = np.sqrt(a)
        er = _sqrt_err(a, ea) + u * r + eta
        denom = ref.denom
        eden = er + u * config.eps + u * denom + eta
        out["denom"] = eden
        q = ref.m / denom
        eq = _div_err(ref.m, em, denom, eden) + u * np.abs(q) + eta
    else:
        assert isinstance(config, SETAdamConfig)
        assert ref.cos2 is not None and ref.v_scaled is not None
        assert ref.w is not None and ref.w_translated is not None
        fa = f.acc
        v = ref.v
        d = flat.layer_size
        gd = np.array([gamma(max(k - 1.0, 0.0), fa.u) for k in d])
        # c and its bound are homogeneous of degree 0 in (v, ev, eta): evaluate them on v scaled
        # by 2^-E per layer (E the exponent of the layer's max v, an exact rescaling) so that
        # v * v cannot overflow float64 for v up to 1.8e308 (nor underflow for tiny v).
        vmax = flat.layer_max(v)
        safe = np.where(np.isfinite(vmax) & (vmax > 0), vmax, 1.0)
        # |E| <= 960 keeps 2^-E and 2^-2E normal numbers (the bound is then merely conservative
        # for layers beyond that range, never wrong).
        scale_l = np.ldexp(1.0, -np.clip(np.frexp(safe)[1], -960, 960))
        scale = scale_l[flat.layer_id]
        vv, evv = v * scale, ev * scale
        s1 = flat.layer_sum(vv)
        s2 = flat.layer_sum(vv * vv)
        # sums of non-negative terms (recursive summation bound), result rounded to the dtype,
        # and a scaling by max v for overflow safety (one rounding per term)
        es1 = flat.layer_sum(evv) + (gd + 3 * u) * s1 + eta * d * scale_l
        ev2 = 2 * vv * evv + evv * evv + 3 * u * vv * vv
        es2 = flat.layer_sum(ev2) + (gd + u) * s2 + eta * d * scale_l * scale_l
        num = s1 * s1
        enum = 2 * s1 * es1 + es1 * es1 + u * num
        den = d * s2
        eden2 = d * es2 + u * den
        c = ref.cos2
        with np.errstate(invalid="ignore"):
            ec = _div_err(num, enum, den, eden2) + 2 * u * c
            ec = np.minimum(ec, np.maximum(1.0 - 1.0 / np.maximum(d, 1.0), 0.0))
        ec = np.where(s1 > 0, ec, 0.0)  # all-zero / empty layer: c is a convention, not compared
        out["cos2"] = ec
        ce, ece = c[flat.layer_id], ec[flat.layer_id]
        vs = ref.v_scaled
        evs = np.minimum(ce * ev + v * ece + ev * ece, v + ev) + u * vs + eta
        out["down_scaling"] = evs
        a = vs / bc2
        ea = (evs + vs * (rbc2 + u)) / bc2 + eta
        b = a + config.eps
        eb = ea + u * config.eps + u * b + eta
        w = ref.w
        ew = _sqrt_err(b, eb) + u * w + eta
        out["epsilon_embedding"] = ew
        wmin = flat.layer_min(w)
        at_min = w <= wmin[flat.layer_id]
        e_at = flat.layer_max(np.where(at_min, ew, -np.inf))
        drop = wmin - flat.layer_min(w - ew)
        ewmin = np.maximum(e_at, drop)
        ewmin = np.where(np.isfinite(ewmin), ewmin, 0.0)  # empty layers
        tau = config.tau
        wt = ref.w_translated
        ewt = ew + tau * ewmin[flat.layer_id] + 2 * u * tau * wmin[flat.layer_id] + u * wt + eta
        out["down_translating"] = ewt
        q = ref.m / wt
        eq = _div_err(ref.m, em, wt, ewt) + u * np.abs(q) + eta

    # update = -(lr / bc1) * q; factor: lr rounded, division by a bias correction
    s = lr / bc1
    rs = 2 * u + rbc1
    core = s * np.abs(q)
    ecore = s * eq + core * (rs + u) + eta
    th0 = np.abs(ref.theta0)
    if decoupled:
        fac = 1.0 - lr * wd
        eth = (
            fac * ein.theta
            + th0 * (3 * u * lr * wd + u * fac)
            + u * fac * th0
            + ecore
            + 2 * u * (core + lr * wd * th0)  # optax adds wd*theta to the update, then scales
            + u * np.abs(ref.theta1)
            + 2 * eta
        )
    else:
        eth = ein.theta + ecore + u * np.abs(ref.theta1) + eta
    out["params"] = eth
    # a port may report its own pre-addition update or theta_t - theta_{t-1} in its dtype
    out["update"] = eth + ein.theta + u * np.abs(ref.update) + eta
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
) -> tuple[Bounds, Bounds, Bounds]:
    """Budget of |port - reference|: the port's bound in ``dtype`` plus the reference's own
    float64 rounding (triangle inequality). Returns (total, port part, reference part); the
    parts feed the next step of a free-running recursion."""
    bp = step_bounds(config, ref, flat, dtype, port_inputs)
    if dtype == "float64":  # both sides round alike: same inputs, same bound
        return bp.scaled(2.0), bp, bp
    br = step_bounds(config, ref, flat, "float64", ref_inputs)
    return bp + br, bp, br
