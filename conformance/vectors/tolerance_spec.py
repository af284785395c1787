"""The tolerance written into each vector, per dtype, and the budgets a checker derives from it.

A vector carries, for each dtype D in (float64, float32, bfloat16, float16), a small record::

    {"applicable": true, "unit_roundoff": u, "param": {"theta_weight": a, "update_weight": b,
     "floor": f}, "state": {"weight": s, "floor": f_s} | null, "max_ulps_report": true}

and every checker (in any language) derives the elementwise absolute budget of step k
(k = 1..T, counted from the vector's first step) from the *expected* trajectory alone:

    B_theta[k][i] = u * ( a * sum_{s=0..k} |theta_s[i]|  +  b * sum_{s=1..k} s * |Delta_s[i]| )
                    + (k + 1) * f
    B_state[k][i] = u * s * sum_{s=0..k} |x_s[i]|  + (k + 1) * f_s      (x = m, v or vmax)

with Delta_s = theta_s - theta_{s-1} (computed in float64 from the expected values). A value
passes when |x - x_ref| <= B (NaN never passes); its *budget fraction* is |x - x_ref| / B and
its error in ulps is |x - x_ref| / ulp_D(x_ref).

Where the weights come from (docs/src/numerics/tolerance.md has the full derivation; the
harness's tolerance model, conformance/tolerance.py, uses the same unit roundoffs):

- theta term: each step rounds theta once when it is stored in D, once more for a decoupled
  decay, and the initial parameters are rounded to D once: a = 4 (2 roundings, factor 2 margin).
- update term: the relative error of one update, in units of u, is bounded by the number of
  rounded operations on its path (bias corrections, moments, square root, division, ~12 for
  Adam) times the condition number of the path. SET-Adam adds the layer sums of down-scaling
  (error ~ log2(d_l) u for pairwise sums, d_l u for a sequential loop: we allow d_max) and the
  translation w - tau*w_min, whose condition number is (1 + tau) / (1 - tau). The moments are
  stored in D and accumulate one rounding per step, hence the factor s on the s-th update.
  b = 16 * kappa with kappa = 1 for Adam and kappa = (1 + tau)/(1 - tau) * (1 + d_max / 8)
  for SET-Adam.
- state: m and v are linear recurrences with positive (v) or bounded (m) coefficients, one
  rounding per step plus the input rounding of g (twice for g^2): s = 8.
- floors: (k + 1) times the smallest positive subnormal of D, for values that underflow.
- vectors whose inputs D cannot represent (|g| ~ 1e150 in float32 and below) are marked
  ``"applicable": false`` with the reason; a checker skips them for that dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from conformance.vectors.catalogue import DTYPES, VectorSpec
from conformance.vectors.encoding import F64Array, hex_float

#: unit roundoff u = 2**-p (p = significand bits incl. the implicit one) per dtype
UNIT_ROUNDOFF: dict[str, float] = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "bfloat16": 2.0**-8,
    "float16": 2.0**-11,
}
#: significand bits (incl. the implicit bit) and minimum normal exponent, for ulps
PRECISION: dict[str, tuple[int, int]] = {
    "float64": (53, -1022),
    "float32": (24, -126),
    "bfloat16": (8, -126),
    "float16": (11, -14),
}

THETA_WEIGHT = 4.0
UPDATE_WEIGHT = 16.0
STATE_WEIGHT = 8.0

MODEL_DESCRIPTION: dict[str, Any] = {
    "name": "setadam-vectors-budget",
    "version": 1,
    "param_budget": "B[k][i] = u*(theta_weight*sum_{s=0..k}|theta_s[i]| + "
    "update_weight*sum_{s=1..k} s*|theta_s[i]-theta_{s-1}[i]|) + (k+1)*floor",
    "state_budget": "B[k][i] = u*weight*sum_{s=0..k}|x_s[i]| + (k+1)*floor  (x = m, v, vmax)",
    "pass": "|x - x_ref| <= B (NaN and infinity never pass); budget fraction = |x - x_ref|/B",
    "ulp": "ulp_D(x) = 2**(max(floor(log2|x|), emin_D) - p_D + 1), ulp_D(0) = 2**(emin_D-p_D+1)",
    "unit_roundoff": {d: hex_float(u) for d, u in UNIT_ROUNDOFF.items()},
    "precision_bits": {d: PRECISION[d][0] for d in DTYPES},
    "min_normal_exponent": {d: PRECISION[d][1] for d in DTYPES},
    "documentation": "docs/src/guide/vectors.md, docs/src/numerics/tolerance.md",
}


def min_subnormal(dtype: str) -> float:
    p, emin = PRECISION[dtype]
    return 2.0 ** (emin - p + 1)


def ulp(x: F64Array, dtype: str) -> F64Array:
    """ulp_D(x) elementwise for the dtype's format (subnormal spacing below the normal range)."""
    p, emin = PRECISION[dtype]
    ax = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(ax > 0, ax, 1.0)))
    e = np.where(ax > 0, np.maximum(e, emin), emin)
    return np.asarray(np.ldexp(1.0, (e - p + 1).astype(np.int64)), dtype=np.float64)


def _kappa(spec: VectorSpec, cfg: Any) -> float:
    if spec.algorithm == "adam":
        return 1.0
    tau = float(cfg.tau)
    sizes = [math.prod(s) for s in spec.shapes]
    d_max = max([sum(sizes[i] for i in layer) for layer in spec.layers] + [1])
    raw = (1.0 + tau) / (1.0 - tau) * (1.0 + d_max / 8.0)
    # round up to a power of two so the stored value is short and exact
    return float(2.0 ** math.ceil(math.log2(raw)))


def vector_tolerances(
    spec: VectorSpec,
    cfg: Any,
    traj_params: Sequence[tuple[F64Array, ...]],
    traj_states: Sequence[Any],
) -> dict[str, Any]:
    """The per-dtype tolerance record of one vector (see the module docstring)."""
    del traj_params, traj_states  # the budgets are derived by the checker from the data
    kappa = _kappa(spec, cfg)
    out: dict[str, Any] = {}
    for d in DTYPES:
        if d in spec.not_applicable:
            out[d] = {"applicable": False, "reason": spec.not_applicable[d]}
            continue
        out[d] = {
            "applicable": True,
            "unit_roundoff": hex_float(UNIT_ROUNDOFF[d]),
            "param": {
                "theta_weight": hex_float(THETA_WEIGHT),
                "update_weight": hex_float(UPDATE_WEIGHT * kappa),
                "floor": hex_float(min_subnormal(d)),
            },
            "state": {
                "weight": hex_float(STATE_WEIGHT),
                "floor": hex_float(min_subnormal(d)),
            },
        }
    return out


def param_budgets(
    tol: dict[str, Any], params: Sequence[Sequence[F64Array]]
) -> list[list[F64Array]]:
    """Budgets B_theta[k][array] for k = 1..T from ``params[0..T]`` (expected, float64)."""
    u = float.fromhex(tol["unit_roundoff"])
    a = float.fromhex(tol["param"]["theta_weight"])
    b = float.fromhex(tol["param"]["update_weight"])
    f = float.fromhex(tol["param"]["floor"])
    n = len(params[0])
    sum_abs = [np.abs(params[0][i]) for i in range(n)]
    sum_upd = [np.zeros_like(params[0][i]) for i in range(n)]
    out: list[list[F64Array]] = []
    for k in range(1, len(params)):
        row = []
        for i in range(n):
            sum_abs[i] = sum_abs[i] + np.abs(params[k][i])
            sum_upd[i] = sum_upd[i] + k * np.abs(params[k][i] - params[k - 1][i])
            row.append(u * (a * sum_abs[i] + b * sum_upd[i]) + (k + 1) * f)
        out.append(row)
    return out


def state_budgets(
    tol: dict[str, Any], values: Sequence[Sequence[F64Array]]
) -> list[list[F64Array]] | None:
    """Budgets for m, v or vmax for k = 1..T from ``values[0..T]``; None when not checked."""
    st = tol.get("state")
    if st is None:
        return None
    u = float.fromhex(tol["unit_roundoff"])
    s = float.fromhex(st["weight"])
    f = float.fromhex(st["floor"])
    n = len(values[0])
    acc = [np.abs(values[0][i]) for i in range(n)]
    out: list[list[F64Array]] = []
    for k in range(1, len(values)):
        row = []
        for i in range(n):
            acc[i] = acc[i] + np.abs(values[k][i])
            row.append(u * s * acc[i] + (k + 1) * f)
        out.append(row)
    return out
