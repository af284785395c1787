"""The tolerance written into each vector: explicit error budgets per dtype, step and coordinate.

Source: the harness's own budgets, :class:`conformance.reference_run.FreeRunningBudget` over the
tolerance model :mod:`conformance.tolerance` (derivation in docs/src/numerics/tolerance.md), so a
vector judges a port exactly as ``setadam-conformance`` does. For each dtype D in (float64,
float32, bfloat16, float16) the export composes the model *free-running* along the vector's
reference trajectory:

- the inputs a port in D receives are the vector's float64 inputs rounded to D, so the port's
  input errors at step 1 are the exact rounding errors ``|round_D(x) - x|`` of theta_0, m_0, v_0
  (vmax_0), and every step's raw gradient carries ``|round_D(g) - g|``;
- the budget of a step is the port's bound in D plus the reference's own float64 bound
  (triangle inequality: the expected values are float64 results, not exact ones), and each
  side's output bounds are its input errors of the next step.

The resulting budgets of the parameters and of m, v, vmax after every step are stored in the
vector, each rounded *up* to 4 significant bits (a short hex string such as ``0x1.8p-40``), so a
checker in any language needs no model: a value passes when ``|x - x_ref| <= budget``. Where
the model gives no finite bound (for example eps = 1e-8 lies below float16's subnormal range, so
the translated denominator of a coordinate with v = 0 is not resolved) the budget is ``"inf"``:
the coordinate is *unresolved* at D and, as in the harness, neither passes nor fails (a NaN of
the port there is not held against it); ``"unresolved"`` counts such parameter budgets. A vector
none of whose parameters D resolves is marked ``"applicable": false`` with the reason. In
float64 every vector must be resolvable: a non-finite float64 budget makes the export fail
loudly (it can only come from a defect of the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from conformance.formats import FORMATS, round_to
from conformance.layout import Flat
from conformance.reference_run import FreeRunningBudget
from conformance.tolerance import InputErrors, StepRef
from conformance.vectors.catalogue import DTYPES, VectorSpec
from conformance.vectors.encoding import F64Array, hex_float

STATE_KINDS: tuple[str, ...] = ("m", "v", "vmax")
#: per step k = 1..T the budgets of params/m/v/vmax per array at one dtype
Rows = list[dict[str, tuple[F64Array, ...]]]
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
    "precision_bits": {d: FORMATS[d].p for d in DTYPES},
    "min_normal_exponent": {d: FORMATS[d].emin for d in DTYPES},
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


def rounding_error(x: F64Array, dtype: str) -> F64Array:
    """|round_D(x) - x| per coordinate (inf where the dtype overflows)."""
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
) -> Rows:
    """Budgets of params/m/v/vmax after every step at ``dtype`` (per array)."""
    flat = Flat.make(spec.shapes, spec.layers)
    c = flat.cat
    st0 = states[0]
    budget = FreeRunningBudget(
        cfg,
        flat,
        dtype,
        InputErrors(
            theta=rounding_error(c(params[0]), dtype),
            m=rounding_error(c(st0.m), dtype),
            v=rounding_error(c(st0.v), dtype),
            vmax=None if st0.vmax is None else rounding_error(c(st0.vmax), dtype),
        ),
    )
    out: Rows = []
    with np.errstate(all="ignore"):
        for k, g in enumerate(spec.grads):
            ref = StepRef.from_trace(flat, params[k], states[k], params[k + 1], traces[k])
            b = budget.next(ref, rounding_error(c(g), dtype))
            row: dict[str, tuple[F64Array, ...]] = {"params": flat.split(b["params"])}
            for kind in STATE_KINDS:
                if kind in b:
                    row[kind] = flat.split(b[kind])
            out.append(row)
    return out


def _first_inf(rows: Sequence[dict[str, tuple[F64Array, ...]]], kind: str) -> str | None:
    for k, row in enumerate(rows, 1):
        for i, a in enumerate(row.get(kind, ())):
            bad = np.flatnonzero(~np.isfinite(a.ravel()))
            if bad.size:
                return f"step {k} {kind}[{i}][{int(bad[0])}]"
    return None


def vector_tolerances(
    spec: VectorSpec,
    cfg: Any,
    params: Sequence[tuple[F64Array, ...]],
    states: Sequence[Any],
    traces: Sequence[Any],
) -> dict[str, Any]:
    """The per-dtype tolerance record of one vector (see the module docstring)."""
    return tolerance_record(
        spec,
        lambda d: free_running_bounds(spec, cfg, params, states, traces, d),
        [int(st.step) for st in states[1:]],
        states[0].vmax is not None,
    )


def tolerance_record(
    spec: VectorSpec, rows_of: Callable[[str], Rows], steps: Sequence[int], has_vmax: bool
) -> dict[str, Any]:
    """The per-dtype tolerance record from the budgets ``rows_of(dtype)`` of the steps labelled
    ``steps`` (the free-running composition of one config, or of a contract's calls)."""
    out: dict[str, Any] = {}
    for d in DTYPES:
        if d in spec.not_applicable:
            out[d] = {"applicable": False, "reason": spec.not_applicable[d]}
            continue
        rows = rows_of(d)
        if d == "float64" and (where := _first_inf(rows, "params")) is not None:
            raise ValueError(
                f"vector {spec.id}: the tolerance model gives no finite float64 budget at {where}; "
                "every vector is resolvable in float64, so this is a defect of the model"
            )
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
                "step": int(steps[k]),
                "params": [encode_budget(a) for a in row["params"]],
            }
            unresolved += sum(int((~np.isfinite(a)).sum()) for a in row["params"])
            for kind in ("m", "v", "vmax"):
                entry[kind] = [encode_budget(a) for a in row[kind]] if kind in kinds else None
            budgets.append(entry)
        out[d] = {
            "applicable": True,
            "model": "conformance.tolerance",
            "unresolved": unresolved,
            "budgets": budgets,
        }
    return out
