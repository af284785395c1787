"""Check that a manifest's vector is what the reference and the tolerance model give for it.

A vector is recomputed from its own inputs (config, shapes, layers, parameters, initial state,
gradients) with the float64 reference and the tolerance model, exactly as ``vectors export``
does. Its expected values must agree with the recomputation within the float64 budget (the
reference's own rounding, so another machine's last-bit differences are no error), and every
budget of every dtype it declares applicable must be finite where the model's is and at most
:data:`BUDGET_SLACK` times the model's. A manifest whose budgets were inflated (``"inf"``
everywhere lets any output pass) or whose expected values were replaced is refused, vector by
vector, with a one-line reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.vectors.catalogue import DTYPES, InitialState, VectorSpec
from conformance.vectors.encoding import F64Array, decode_array, parse_float

#: how far above the model's budget a stored budget may lie: rounding up to 4 significant bits
#: differs by at most one step (a factor 1 + 1/8) between machines; 2 leaves room and still
#: refuses any real inflation
BUDGET_SLACK = 2.0
_STATE = ("m", "v", "vmax")
_MODES = ("weight_decay_mode", "amsgrad_mode", "eps_mode")


def _config(config: dict[str, Any]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in config.items():
        if k in ("beta1", "beta2"):
            continue
        out[k] = v if isinstance(v, bool) or k in _MODES else parse_float(str(v))
    out["betas"] = (parse_float(config["beta1"]), parse_float(config["beta2"]))
    return out


def _contract(vec: dict[str, Any], shapes: Any) -> dict[str, Any]:
    """The version-2 fields of a :class:`VectorSpec` and the gradients (zeros where absent)."""
    active, steps = vec.get("active"), len(vec["inputs"]["grads"])
    if active is not None and [len(r) for r in active] != [len(shapes)] * steps:
        raise ValueError(f"'active' is not {steps} rows of {len(shapes)} arrays")
    grads = []
    for k, row in enumerate(vec["inputs"]["grads"]):
        out = []
        for i, (a, s) in enumerate(zip(row, shapes, strict=True)):
            on = active is None or bool(active[k][i])
            if (a is None) == on:
                raise ValueError(f"grads[{k}][{i}] is {'null' if on else 'given'} but active is {on}")
            out.append(decode_array(a, s) if on else np.zeros(s))
        grads.append(tuple(out))
    groups = vec.get("groups")
    factors = vec.get("lr_factors")
    return {
        "grads": tuple(grads),
        "groups": None if groups is None else tuple(
            (tuple(int(i) for i in g["arrays"]), _config(g["config"])) for g in groups
        ),
        "lr_factors": None if factors is None else tuple(parse_float(str(f)) for f in factors),
        "active": None if active is None else tuple(tuple(map(bool, r)) for r in active),
    }  # fmt: skip


def spec_of(vec: dict[str, Any]) -> VectorSpec:
    """The :class:`VectorSpec` a manifest vector was exported from (its inputs decoded)."""
    shapes = tuple(tuple(int(n) for n in s) for s in vec["shapes"])

    def arrays(values: Any) -> tuple[F64Array, ...]:
        return tuple(decode_array(a, s) for a, s in zip(values, shapes, strict=True))

    st = vec["inputs"]["initial_state"]
    vmax = None if st["vmax"] is None else arrays(st["vmax"])
    contract = _contract(vec, shapes)
    return VectorSpec(
        id=vec["id"],
        algorithm=vec["algorithm"],
        config=_config(vec["config"]) if "config" in vec else {},
        shapes=shapes,
        layers=tuple(tuple(int(i) for i in layer) for layer in vec["layers"]),
        params=arrays(vec["inputs"]["params"]),
        grads=contract.pop("grads"),
        flags=tuple(vec["flags"]),
        description=vec["description"],
        initial_state=InitialState(int(st["step"]), arrays(st["m"]), arrays(st["v"]), vmax),
        not_applicable={
            d: str(t.get("reason", "")) for d, t in vec["tolerance"].items() if not t["applicable"]
        },
        **contract,
    )


def _flat(values: list[str]) -> F64Array:
    return np.array([parse_float(str(x)) for x in values], dtype=np.float64)


def _expected_problem(vec: dict[str, Any], ref: dict[str, Any]) -> str | None:
    f64 = ref["tolerance"]["float64"]
    for k, (got, want) in enumerate(zip(vec["expected"], ref["expected"], strict=True)):
        bud = f64["budgets"][k]
        for kind, key in (("params", "params"), *((q, q) for q in _STATE)):
            if (got[key] is None) != (want[key] is None):
                return f"expected {kind} of step {k + 1} present where the reference has none"
            if want[key] is None:
                continue
            for i, (a, b) in enumerate(zip(got[key], want[key], strict=True)):
                err = np.abs(_flat(a) - _flat(b))
                lim = _flat(bud[key][i])
                bad = np.flatnonzero(~(err <= lim))
                if bad.size:
                    j = int(bad[0])
                    return (
                        f"expected {kind} of step {k + 1}, array {i}, index {j} is not the "
                        f"reference's ({a[j]} instead of {b[j]})"
                    )
    return None


def _budget_problem(vec: dict[str, Any], ref: dict[str, Any]) -> str | None:
    for d in DTYPES:
        got, want = vec["tolerance"][d], ref["tolerance"][d]
        if not got["applicable"]:
            continue
        if not want["applicable"]:
            return f"{d} is declared applicable; the tolerance model gives it no finite bound"
        for k, (gb, wb) in enumerate(zip(got["budgets"], want["budgets"], strict=True)):
            for kind in ("params", *_STATE):
                if (gb.get(kind) is None) != (wb.get(kind) is None):
                    return f"{d} budgets of {kind} at step {k + 1} missing or extra"
                if wb.get(kind) is None:
                    continue
                for i, (a, b) in enumerate(zip(gb[kind], wb[kind], strict=True)):
                    x, y = _flat(a), _flat(b)
                    bad = np.flatnonzero(np.isfinite(y) & ~(x <= BUDGET_SLACK * y))
                    if bad.size:
                        j = int(bad[0])
                        return (
                            f"the {d} budget of {kind} at step {k + 1}, array {i}, index {j} is "
                            f"{a[j]}; the tolerance model's is {b[j]}"
                        )
    return None


def vector_mismatch(vec: dict[str, Any]) -> str | None:
    """Why ``vec`` is not what the reference and the tolerance model give for its inputs (a
    one-line reason), or None. Raises KeyError/TypeError/ValueError on a malformed record."""
    from conformance.vectors.export import compute

    if not vec["tolerance"]["float64"]["applicable"]:
        return "float64 is declared not applicable; every vector is resolvable in float64"
    ref = compute(spec_of(vec))
    if len(vec["expected"]) != len(ref["expected"]):
        return f"{len(vec['expected'])} expected steps for {len(ref['expected'])} gradients"
    counts = [e.get("counts") for e in vec["expected"]]
    if counts != [e.get("counts") for e in ref["expected"]]:
        return "expected step counts are not the reference's"
    return _expected_problem(vec, ref) or _budget_problem(vec, ref)
