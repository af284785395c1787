"""The tolerance written into each vector: explicit error budgets per dtype, step and coordinate.

Source: the harness's tolerance model, :mod:`conformance.tolerance` (derivation in
docs/src/numerics/tolerance.md). For each dtype D in (float64, float32, bfloat16, float16) the
export runs the model *free-running* along the vector's reference trajectory:

- the inputs a port in D receives are the vector's float64 inputs rounded to D, so the input
  errors of step 1 are the exact rounding errors ``|round_D(x) - x|`` of theta_0, m_0, v_0
  (vmax_0), and every step's raw gradient carries ``|round_D(g) - g|``;
- ``conformance.tolerance.step_bounds`` bounds the absolute error of every quantity of the step
  computed in D (any of the known arithmetic orders), and its output bounds are the input
  errors of the next step (``Bounds.next_inputs``).

The resulting bounds of the parameters and of m, v, vmax after every step are stored in the
vector, each rounded *up* to 4 significant bits (a short hex string such as ``0x1.8p-40``), so a
checker in any language needs no model: a value passes when ``|x - x_ref| <= budget``. Where
the model gives no finite bound (for example eps = 1e-8 lies below float16's subnormal range, so
the translated denominator of a coordinate with v = 0 is not resolved) the budget is ``"inf"``:
the coordinate is *unresolved* at D and, as in the harness, neither passes nor fails (a NaN of
the port there is not held against it); ``"unresolved"`` counts such parameter budgets. A vector
none of whose parameters D resolves is marked ``"applicable": false`` with the reason.

A safety net, recorded as ``"model": "fallback"`` in the dtype's record: in float64 every vector
is resolvable, so a non-finite model bound there can only come from overflow inside the model's
own evaluation (the model scales its layer sums by powers of two, so no canonical vector needs
this today; an earlier model squared v unscaled and overflowed at |g| ~ 1e150). Those vectors get
the budgets of the simple documented formula below (:func:`fallback_bounds`), with the unit
roundoff u of the dtype, k = 1..T, Delta_s = theta_s - theta_{s-1} and
G_s = |g_s| + lambda_l2 |theta_{s-1}|::

    B_theta[k] = u * (4 * sum_{s=0..k} |theta_s| + 16 kappa * sum_{s=1..k} s |Delta_s|)
    B_m[k]     = 8 u * sum_{s=0..k} (|m_s| + G_s)        B_v[k] = 8 u * sum_{s=0..k} (|v_s| + G_s^2)

kappa = 1 for Adam and (1 + tau)/(1 - tau) * (1 + d_max/8) rounded up to a power of two for
SET-Adam (the condition number of the translation w - tau*w_min times the layer-sum growth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from conformance.vectors.catalogue import DTYPES, VectorSpec
from conformance.vectors.encoding import F64Array, hex_float

#: significand bits (incl. the implicit bit) and minimum normal exponent, for ulps
PRECISION: dict[str, tuple[int, int]] = {
    "float64": (53, -1022),
    "float32": (24, -126),
    "bfloat16": (8, -126),
    "float16": (11, -14),
}
STATE_KINDS: tuple[str, ...] = ("m", "v", "vmax")
#: the budget of a coordinate the dtype cannot resolve (the model's bound is infinite)
UNRESOLVED = "inf"

MODEL_DESCRIPTION: dict[str, Any] = {
    "name": "conformance.tolerance",
    "mode": "free-running: step_bounds composed along the reference trajectory, inputs "
    "rounded to the dtype (exact rounding errors), bounds of step k feeding step k+1",
    "budgets": "absolute, per dtype, step and coordinate, rounded up to 4 significant bits",
    "pass": "|x - x_ref| <= budget (NaN and infinities never pass); "
    "budget fraction = |x - x_ref| / budget",
    "ulp": "ulp_D(x) = 2**(max(floor(log2|x|), emin_D) - p_D + 1), "
    "ulp_D(0) = 2**(emin_D - p_D + 1); reported, not judged",
    "precision_bits": {d: PRECISION[d][0] for d in DTYPES},
    "min_normal_exponent": {d: PRECISION[d][1] for d in DTYPES},
    "documentation": "docs/src/guide/vectors.md, docs/src/numerics/tolerance.md",
}


def round_up_4bits(x: float) -> float:
    """The smallest number >= x with at most 4 significant bits (x >= 0 finite)."""
    if x <= 0.0:
        return 0.0
    m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= m < 1
    return math.ldexp(math.ceil(m * 16.0) / 16.0, e)


def encode_budget(a: F64Array) -> list[str]:
    """Budgets as canonical hex rounded up to 4 bits; ``"inf"`` for an unresolved coordinate."""
    return [
        hex_float(round_up_4bits(float(x))) if math.isfinite(x) else UNRESOLVED
        for x in np.asarray(a, dtype=np.float64).ravel()
    ]


def ulp(x: F64Array, dtype: str) -> F64Array:
    """ulp_D(x) elementwise for the dtype's format (subnormal spacing below the normal range)."""
    p, emin = PRECISION[dtype]
    ax = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log2(np.where((ax > 0) & np.isfinite(ax), ax, 1.0)))
    e = np.where(ax > 0, np.maximum(e, emin), emin)
    return np.asarray(np.ldexp(1.0, (e - p + 1).astype(np.int64)), dtype=np.float64)


def _round_err(x: F64Array, dtype: str) -> F64Array:
    from conformance.formats import round_to

    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(round_to(x, dtype) - x)
    return np.asarray(np.where(np.isfinite(err), err, np.inf), dtype=np.float64)


def free_running_bounds(
    spec: VectorSpec,
    cfg: Any,
    params: Sequence[tuple[F64Array, ...]],
    states: Sequence[Any],
    traces: Sequence[Any],
    dtype: str,
) -> list[dict[str, tuple[F64Array, ...]]]:
    """Bounds of params/m/v/vmax after every step at ``dtype`` (per array, model's units)."""
    from conformance import tolerance as tm
    from conformance.layout import Flat

    flat = Flat.make(spec.shapes, spec.layers)
    c = flat.cat
    st0 = states[0]
    ein = tm.InputErrors(
        theta=_round_err(c(params[0]), dtype),
        m=_round_err(c(st0.m), dtype),
        v=_round_err(c(st0.v), dtype),
        vmax=None if st0.vmax is None else _round_err(c(st0.vmax), dtype),
    )
    out: list[dict[str, tuple[F64Array, ...]]] = []
    with np.errstate(all="ignore"):
        for k, g in enumerate(spec.grads):
            ref = tm.StepRef.from_trace(flat, params[k], states[k], params[k + 1], traces[k])
            ein.grad = _round_err(c(g), dtype)
            b = tm.step_bounds(cfg, ref, flat, dtype, ein)
            row: dict[str, tuple[F64Array, ...]] = {"params": flat.split(b["params"])}
            for kind in STATE_KINDS:
                if kind in b:
                    row[kind] = flat.split(b[kind])
            out.append(row)
            ein = b.next_inputs()
    return out


def _first_inf(rows: Sequence[dict[str, tuple[F64Array, ...]]], kind: str) -> str | None:
    for k, row in enumerate(rows, 1):
        for i, a in enumerate(row.get(kind, ())):
            bad = np.flatnonzero(~np.isfinite(a.ravel()))
            if bad.size:
                return f"step {k} {kind}[{i}][{int(bad[0])}]"
    return None


def _kappa(spec: VectorSpec, cfg: Any) -> float:
    if spec.algorithm == "adam":
        return 1.0
    tau = float(cfg.tau)
    sizes = [math.prod(s) for s in spec.shapes]
    d_max = max([sum(sizes[i] for i in layer) for layer in spec.layers] + [1])
    raw = (1.0 + tau) / (1.0 - tau) * (1.0 + d_max / 8.0)
    return float(2.0 ** math.ceil(math.log2(raw)))


def fallback_bounds(
    spec: VectorSpec,
    cfg: Any,
    params: Sequence[tuple[F64Array, ...]],
    states: Sequence[Any],
    dtype: str,
) -> list[dict[str, tuple[F64Array, ...]]]:
    """The simple formula of the module docstring (used only where the model overflows)."""
    u = 2.0 ** -PRECISION[dtype][0]
    kappa = _kappa(spec, cfg)
    lam = float(cfg.weight_decay) if cfg.weight_decay_mode == "l2" else 0.0
    n = len(params[0])
    acc_t = [np.abs(params[0][i]) for i in range(n)]
    acc_d = [np.zeros_like(params[0][i]) for i in range(n)]
    acc = {
        k: [np.abs(getattr(states[0], k)[i]) for i in range(n)]
        for k in STATE_KINDS
        if getattr(states[0], k) is not None
    }
    optax = getattr(cfg, "amsgrad_mode", "") == "optax"
    out: list[dict[str, tuple[F64Array, ...]]] = []
    with np.errstate(over="ignore"):
        for k in range(1, len(params)):
            row: dict[str, tuple[F64Array, ...]] = {}
            bt = []
            for i in range(n):
                acc_t[i] = acc_t[i] + np.abs(params[k][i])
                acc_d[i] = acc_d[i] + k * np.abs(params[k][i] - params[k - 1][i])
                bt.append(u * (4.0 * acc_t[i] + 16.0 * kappa * acc_d[i]))
            row["params"] = tuple(bt)
            bc2 = 1.0 - float(cfg.betas[1]) ** int(states[k].step)
            for kind, arrs in acc.items():
                b = []
                for i in range(n):
                    g = np.abs(spec.grads[k - 1][i]) + lam * np.abs(params[k - 1][i])
                    extra = g if kind == "m" else g * g / (bc2 if kind == "vmax" and optax else 1.0)
                    arrs[i] = arrs[i] + np.abs(getattr(states[k], kind)[i]) + extra
                    b.append(8.0 * u * arrs[i])
                row[kind] = tuple(b)
            out.append(row)
    return out


def vector_tolerances(
    spec: VectorSpec,
    cfg: Any,
    params: Sequence[tuple[F64Array, ...]],
    states: Sequence[Any],
    traces: Sequence[Any],
) -> dict[str, Any]:
    """The per-dtype tolerance record of one vector (see the module docstring)."""
    out: dict[str, Any] = {}
    has_vmax = states[0].vmax is not None
    for d in DTYPES:
        if d in spec.not_applicable:
            out[d] = {"applicable": False, "reason": spec.not_applicable[d]}
            continue
        rows = free_running_bounds(spec, cfg, params, states, traces, d)
        model = "conformance.tolerance"
        if d == "float64" and _first_inf(rows, "params") is not None:
            rows, model = fallback_bounds(spec, cfg, params, states, d), "fallback"
        if all(not np.isfinite(a).any() for a in rows[0]["params"] if a.size) and any(
            a.size for a in rows[0]["params"]
        ):
            out[d] = {
                "applicable": False,
                "reason": f"the tolerance model gives no finite bound for any parameter: {d} "
                "cannot resolve this vector (e.g. eps or v below its range)",
            }
            continue
        kinds = ["m", "v"] + (["vmax"] if has_vmax else [])
        budgets = []
        unresolved = 0
        for k, row in enumerate(rows):
            entry: dict[str, Any] = {
                "step": int(states[k + 1].step),
                "params": [encode_budget(a) for a in row["params"]],
            }
            unresolved += sum(int((~np.isfinite(a)).sum()) for a in row["params"])
            for kind in ("m", "v", "vmax"):
                entry[kind] = [encode_budget(a) for a in row[kind]] if kind in kinds else None
            budgets.append(entry)
        out[d] = {
            "applicable": True,
            "model": model,
            "unresolved": unresolved,
            "budgets": budgets,
        }
    return out
