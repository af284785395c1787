"""Contract vectors (manifest version 2): param groups, an lr factor per step, absent gradients.

A contract vector runs the reference exactly as the harness runs a contract scenario
(:func:`conformance.contract_reference.contract_step`): step k, for every group G_j with its
config c_j at lr_j * f_k, is one ``setadam_ref.step`` over the arrays of G_j that have a gradient
at k (``active[k-1][i]``) and share a step count s (the call's t is s + 1); its layers are the
vector's layers restricted to those arrays. An array without gradient keeps theta, m, v, vmax
and its step count, and does not count in its layer's sums nor in its minimum. The schedule
index k advances at every step, the counts only with a gradient.

Budgets come from the same composition: each call's :func:`conformance.tolerance.
comparison_bounds` with the call's config, scattered back; at a skipped coordinate the parameter
and moments carry their input errors unchanged. As for a version-1 vector the port's inputs at
D are the float64 inputs rounded to D (theta_0, m_0, v_0, vmax_0 and every gradient).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.contract import Contract
from conformance.contract_reference import ArrayStates, amsgrad_of, contract_step, masked
from conformance.layout import Flat
from conformance.tolerance import InputErrors
from conformance.vectors.catalogue import VectorSpec
from conformance.vectors.encoding import F64Array, hex_float
from conformance.vectors.tolerance_spec import STATE_KINDS, Rows, rounding_error

Arrays = tuple[F64Array, ...]


class NotExpressible(ValueError):
    """A contract the reference cannot run as one vector: groups that mix amsgrad and no
    amsgrad, a layer whose arrays with a gradient have different step counts."""


def config_obj(algorithm: str, fields: dict[str, object]) -> Any:
    """The reference's config of ``algorithm`` with ``fields`` (reference field names)."""
    import setadam_ref

    if algorithm == "adam":
        return setadam_ref.AdamConfig(**fields)  # type: ignore[arg-type]
    return setadam_ref.SETAdamConfig(**fields)  # type: ignore[arg-type]


def contract_of_spec(spec: VectorSpec) -> Contract:
    """The :class:`~conformance.contract.Contract` a contract vector describes. Raises
    ValueError when the groups do not partition the arrays, a layer spans groups, or the lr
    factors or presence rows do not match the steps and arrays."""
    n, steps = len(spec.shapes), len(spec.grads)
    groups = spec.groups if spec.groups is not None else ((tuple(range(n)), spec.config),)
    if sorted(i for a, _ in groups for i in a) != list(range(n)):
        raise ValueError(f"groups {[list(a) for a, _ in groups]} do not partition {n} arrays")
    group_of = {i: j for j, (a, _) in enumerate(groups) for i in a}
    for layer in spec.layers:
        if len({group_of[i] for i in layer}) > 1:
            raise ValueError(f"layer {list(layer)} spans param groups")
    if spec.lr_factors is not None and len(spec.lr_factors) != steps:
        raise ValueError(f"{len(spec.lr_factors)} lr factors for {steps} steps")
    if spec.active is not None and [len(r) for r in spec.active] != [n] * steps:
        raise ValueError(f"the presence mask is not {steps} rows of {n} arrays")
    return Contract(
        tuple((tuple(a), config_obj(spec.algorithm, dict(c))) for a, c in groups),
        spec.lr_factors,
        spec.active is not None,
        layers=spec.layers,
    )


def _initial(spec: VectorSpec, amsgrad: bool) -> tuple[Arrays, ArrayStates]:
    params = tuple(np.array(p, dtype=np.float64) for p in spec.params)
    s0 = spec.initial_state
    if s0 is None:
        return params, ArrayStates.zeros(params, amsgrad)
    vmax = None if s0.vmax is None else list(s0.vmax)
    return params, ArrayStates(list(s0.m), list(s0.v), vmax, [s0.step] * len(params))


def run(spec: VectorSpec, dtype: str) -> tuple[list[tuple[Arrays, ArrayStates]], Rows]:
    """The reference trajectory (inputs first) and the budgets at ``dtype`` of every step."""
    contract = contract_of_spec(spec)
    flat = Flat.make(spec.shapes, spec.layers)
    c = flat.cat
    try:
        amsgrad = amsgrad_of(contract)
    except ValueError as exc:
        raise NotExpressible(str(exc)) from None
    p, states = _initial(spec, amsgrad)
    port = InputErrors(
        rounding_error(c(p), dtype), rounding_error(c(states.m), dtype),
        rounding_error(c(states.v), dtype),
        None if states.vmax is None else rounding_error(c(states.vmax), dtype),
    )  # fmt: skip
    ref = InputErrors.zeros(flat.size, states.vmax is not None)
    traj = [(p, states)]
    rows: Rows = []
    with np.errstate(all="ignore"):
        for k, g in enumerate(spec.grads, 1):
            port.grad = rounding_error(c(g), dtype)
            grads = masked(g, None if spec.active is None else spec.active[k - 1])
            try:
                cs = contract_step(contract, flat, k, p, states, grads, dtype, dtype, port, ref)
            except ValueError as exc:  # a layer over arrays with different step counts
                raise NotExpressible(f"step {k}: {exc}") from None
            b = cs.bounds
            row = {"params": flat.split(b["params"])}
            row.update({kind: flat.split(b[kind]) for kind in STATE_KINDS if kind in b})
            rows.append(row)
            port, ref = cs.port_next, cs.ref_next
            p, states = cs.params, cs.states
            traj.append((p, states))
    return traj, rows


def contract_fields(spec: VectorSpec, config_json: Any) -> dict[str, Any]:
    """The version-2 fields of a vector's JSON object (``config_json``: a config as JSON)."""
    out: dict[str, Any] = {}
    if spec.groups is not None:
        out["groups"] = [
            {"arrays": list(a), "config": config_json(config_obj(spec.algorithm, dict(cfg)))}
            for a, cfg in spec.groups
        ]
    if spec.lr_factors is not None:
        out["lr_factors"] = [hex_float(f) for f in spec.lr_factors]
    if spec.active is not None:
        out["active"] = [list(map(bool, row)) for row in spec.active]
    return out


def text_records(vec: dict[str, Any], key: str, step: int, k: int) -> list[str]:
    """The text twin's records of version 2 at ``key`` (``"groups"``: after the layers;
    ``"step"``: before the gradients of the k-th step, labelled ``step``)."""
    lines: list[str] = []
    if key == "groups" and "groups" in vec:
        lines.append(f"groups {len(vec['groups'])}")
        for j, grp in enumerate(vec["groups"]):
            lines.append(" ".join(map(str, ("group", j, len(grp["arrays"]), *grp["arrays"]))))
            lines.extend(config_lines(grp["config"]))
    if key == "step" and "lr_factors" in vec:
        lines.append(f"lr_factor {step} {vec['lr_factors'][k - 1]}")
    if key == "step" and "active" in vec:
        row = vec["active"][k - 1]
        lines.append(" ".join(map(str, ("active", step, len(row), *(int(a) for a in row)))))
    return lines


def config_lines(config: dict[str, Any]) -> list[str]:
    """A config's text records: ``KEY VALUE`` (booleans as 0/1)."""
    return [f"{k} {int(v)}" if isinstance(v, bool) else f"{k} {v}" for k, v in config.items()]
