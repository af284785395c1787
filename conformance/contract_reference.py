"""The reference of a contract scenario: per group and per participating arrays, scattered back.

Step ``t`` of a contract scenario (:mod:`conformance.contract`) is, for every group ``k`` with
its config ``c_k`` at ``t`` (lr scaled by the schedule), one ``setadam_ref.step`` over the arrays
``P_{k,t}`` of ``G_k`` that have a gradient at ``t`` and share a step count ``s`` (so the call's
``t`` is ``s + 1``, that of each of its arrays); its layers are the problem's layers restricted
to ``P_{k,t}``, so an array without gradient does not count in its layer's sums ``S_1, S_2``
nor in its minimum. An array without gradient keeps theta, m, v, vmax and its step count.
A layer whose participating arrays have different step counts is not expressible in one call:
``ValueError`` (a scenario must not need it).

Every call's trace and tolerance-model bounds (:func:`conformance.tolerance.comparison_bounds`
with the call's own config, flat layout and input errors) are scattered into the full
:class:`~conformance.layout.Flat`; at a skipped coordinate the parameter and moments carry their
input errors unchanged and the update is exactly 0 (budget 0 when re-synced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

import setadam_ref as R
from setadam_ref import AdamConfig, SETAdamConfig, State

from . import systematic_floor
from .contract import Contract
from .formats import round_to
from .layout import Flat
from .tolerance import Bounds, InputErrors, StepRef, comparison_bounds

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .scenarios import Problem

Arrays = tuple[np.ndarray, ...]
Grads = tuple[np.ndarray | None, ...]
#: one reference call of a step: (group, step count, arrays, their layers, global layer ids)
Call = tuple[int, int, list[int], tuple[tuple[int, ...], ...], list[int]]


@dataclass
class ArrayStates:
    """Per-array optimizer state: the moments and each array's own step count."""

    m: list[np.ndarray]
    v: list[np.ndarray]
    vmax: list[np.ndarray] | None
    steps: list[int]

    @staticmethod
    def zeros(params: Sequence[np.ndarray], amsgrad: bool) -> ArrayStates:
        z = [np.zeros(np.shape(p)) for p in params]
        return ArrayStates(z, list(z), list(z) if amsgrad else None, [0] * len(z))

    def cast(self, dtype: str) -> ArrayStates:
        def c(a: list[np.ndarray]) -> list[np.ndarray]:
            return [round_to(np.asarray(x, dtype=np.float64), dtype) for x in a]

        return ArrayStates(
            c(self.m), c(self.v), None if self.vmax is None else c(self.vmax), list(self.steps)
        )

    def as_state(self, step: int) -> State:
        """The reference's ``State`` with one step count (what a port's reset takes)."""
        vmax = None if self.vmax is None else tuple(self.vmax)
        return State(step=step, m=tuple(self.m), v=tuple(self.v), vmax=vmax)


def common_step(states: ArrayStates, grads: Grads) -> int | None:
    """The one step count of the arrays with a gradient, or None when they differ."""
    counts = {states.steps[i] for i, g in enumerate(grads) if g is not None}
    if len(counts) > 1:
        return None
    return counts.pop() if counts else max(states.steps, default=0)


def reference_calls(
    contract: Contract, flat: Flat, states: ArrayStates, grads: Grads
) -> list[Call]:
    """(group, step count, arrays, sub-layers, layer ids) of every reference call of one step."""
    out: list[Call] = []
    for k, (arrays, _cfg) in enumerate(contract.groups):
        part = [i for i in arrays if grads[i] is not None]
        for s in sorted({states.steps[i] for i in part}):
            idx = [i for i in part if states.steps[i] == s]
            lay: dict[int, list[int]] = {}
            for pos, i in enumerate(idx):
                lay.setdefault(flat.layer_of_array[i], []).append(pos)
            for lid in lay:
                members = [i for i in part if flat.layer_of_array[i] == lid]
                if len(members) != len(lay[lid]):
                    raise ValueError(
                        f"layer {lid}: its arrays with a gradient have different step counts "
                        f"{sorted({states.steps[i] for i in members})} (not expressible)"
                    )
            out.append((k, s, idx, tuple(tuple(v) for v in lay.values()), list(lay)))
    return out


@dataclass
class ContractStep:
    """One step of a contract scenario: new params/state, the scattered trace and budgets."""

    params: Arrays
    states: ArrayStates
    ref: StepRef
    bounds: Bounds
    port_next: InputErrors
    ref_next: InputErrors
    calls: int = 0
    #: the systematic test's floor, each call's coordinates from its group's config (``floor``)
    floor: np.ndarray | None = None


def _carried(e: InputErrors) -> InputErrors:
    return InputErrors(
        e.theta.copy(), e.m.copy(), e.v.copy(), None if e.vmax is None else e.vmax.copy()
    )


def _sub(e: InputErrors, coords: np.ndarray) -> InputErrors:
    # grad: the raw gradient's error, set only by a golden vector (float64 inputs a port in a
    # lower dtype receives rounded); None in the harness, whose gradients are cast first
    return InputErrors(
        e.theta[coords], e.m[coords], e.v[coords], None if e.vmax is None else e.vmax[coords],
        None if e.grad is None else e.grad[coords],
    )  # fmt: skip


def _put(e: InputErrors, coords: np.ndarray, sub: InputErrors) -> None:
    e.theta[coords], e.m[coords], e.v[coords] = sub.theta, sub.m, sub.v
    if e.vmax is not None and sub.vmax is not None:
        e.vmax[coords] = sub.vmax


def contract_step(
    contract: Contract,
    flat: Flat,
    t: int,
    params: Arrays,
    states: ArrayStates,
    grads: Grads,
    dtype: str,
    state_dtype: str,
    port_in: InputErrors,
    ref_in: InputErrors,
    floor: bool = False,
) -> ContractStep:
    """Step ``t`` of the contract from ``params``/``states`` with ``grads`` (None: no gradient);
    ``floor``: also the systematic test's floor, per call from the call's config and trace (a
    group's decay, lr and step count are its own: the run's config would give another group's
    common scalars, e.g. no decay factor at all where group 0 has no weight decay)."""
    setadam = isinstance(contract.groups[0][1], SETAdamConfig)
    cat = flat.cat
    theta0, m0, v0 = cat(params), cat(states.m), cat(states.v)
    vmax0 = None if states.vmax is None else cat(states.vmax)
    nan = np.full(flat.size, np.nan)
    ref = StepRef(
        t, theta0, m0, v0, vmax0, np.zeros(flat.size), m0.copy(), v0.copy(),
        None if vmax0 is None else vmax0.copy(), theta0.copy(), np.zeros(flat.size), 1.0, 1.0,
        denom=None if setadam else nan.copy(),
        cos2=np.full(flat.n_layers, np.nan) if setadam else None,
        v_scaled=nan.copy() if setadam else None,
        w=nan.copy() if setadam else None,
        w_translated=nan.copy() if setadam else None,
    )  # fmt: skip
    carried = {
        "params": port_in.theta + ref_in.theta,
        "m": port_in.m + ref_in.m,
        "v": port_in.v + ref_in.v,
    }
    if port_in.vmax is not None and ref_in.vmax is not None:
        carried["vmax"] = port_in.vmax + ref_in.vmax
    bounds = Bounds(dict(carried))
    port_next, ref_next = _carried(port_in), _carried(ref_in)
    new_p = list(params)
    new = ArrayStates(
        list(states.m), list(states.v), None if states.vmax is None else list(states.vmax),
        list(states.steps),
    )  # fmt: skip
    calls = reference_calls(contract, flat, states, grads)
    fl = np.zeros(flat.size) if floor else None
    for n, (k, s, idx, sub_layers, lids) in enumerate(calls):
        cfg = contract.config_at(k, t)
        sub_flat = Flat.make([flat.shapes[i] for i in idx], sub_layers)
        sub_p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        vmax = None if states.vmax is None else tuple(states.vmax[i] for i in idx)
        st = State(s, tuple(states.m[i] for i in idx), tuple(states.v[i] for i in idx), vmax)
        p1, st1, tr = R.step(sub_p, g, st, cfg, sub_layers, trace=True)
        assert tr is not None
        sref = StepRef.from_trace(sub_flat, sub_p, st, p1, tr)
        coords = np.concatenate(
            [np.arange(flat.offsets[i], flat.offsets[i + 1]) for i in idx] or [np.zeros(0, int)]
        )
        total, bp, br = comparison_bounds(
            cfg, sref, sub_flat, dtype, _sub(port_in, coords), _sub(ref_in, coords),
            state_dtype=state_dtype,
        )  # fmt: skip
        for name, val in total.values.items():
            if name == "cos2":
                full = bounds.values.setdefault(name, np.zeros(flat.n_layers))
                full[lids] = val
                continue
            full = bounds.values.setdefault(name, np.zeros(flat.size))
            full[coords] = val
        if fl is not None:
            fl[coords] = systematic_floor.floor(cfg, sref, sub_flat, dtype, state_dtype)
        _put(port_next, coords, bp.next_inputs())
        _put(ref_next, coords, br.next_inputs())
        for name in ("grad", "m", "v", "vmax", "theta1", "update", "denom", "v_scaled", "w"):
            dst, src = getattr(ref, name), getattr(sref, name)
            if dst is not None and src is not None:
                dst[coords] = src
        if ref.w_translated is not None and sref.w_translated is not None:
            ref.w_translated[coords] = sref.w_translated
        if ref.cos2 is not None and sref.cos2 is not None:
            ref.cos2[lids] = sref.cos2
        if n == 0:  # one call's scalars stand for the step's (they differ between calls)
            ref.bias_correction1 = sref.bias_correction1
            ref.bias_correction2 = sref.bias_correction2
        for j, i in enumerate(idx):
            new_p[i] = p1[j]
            new.m[i], new.v[i], new.steps[i] = st1.m[j], st1.v[j], s + 1
            if new.vmax is not None and st1.vmax is not None:
                new.vmax[i] = st1.vmax[j]
    return ContractStep(tuple(new_p), new, ref, bounds, port_next, ref_next, len(calls), fl)


def masked(grads: Arrays, active: Sequence[bool] | None) -> Grads:
    """``grads`` with None where the array has no gradient at this step."""
    if active is None:
        return tuple(grads)
    return tuple(g if a else None for g, a in zip(grads, active, strict=True))


def amsgrad_of(contract: Contract) -> bool:
    """Whether the groups keep vmax (all or none: a mixed contract is not expressible here)."""
    flags = {isinstance(c, AdamConfig) and c.amsgrad for _, c in contract.groups}
    if len(flags) > 1:
        raise ValueError("groups that mix amsgrad and no amsgrad are not supported")
    return flags.pop()


@dataclass
class ContractRun:
    """The reference trajectory of a contract scenario (what ``ReferenceRun`` is filled with)."""

    params: list[Arrays] = field(default_factory=list)  # T + 1 entries
    states: list[State] = field(default_factory=list)  # m, v; step = the largest count
    grads: list[Grads] = field(default_factory=list)  # None: no gradient at that step
    free_bounds: list[Bounds] = field(default_factory=list)
    #: t -> (cast params, cast state, grads, new params, new state, StepRef, bounds, the
    #: systematic test's floor formed per group)
    resync: dict[
        int, tuple[Arrays, State, Grads, Arrays, State, StepRef, Bounds, np.ndarray | None]
    ] = field(default_factory=dict)
    not_resynced: list[int] = field(default_factory=list)  # scheduled, not expressible
    #: scheduled, but the count of the arrays with a gradient is not t - 1 under an lr schedule
    unplaced: list[int] = field(default_factory=list)


def contract_run(
    problem: Problem,
    contract: Contract,
    flat: Flat,
    dtype: str,
    state_dtype: str,
    schedule: set[int],
) -> ContractRun:
    """Free trajectory and budgets, and the re-synced steps of ``schedule`` where expressible.

    A re-synced step hands the port one ``State`` (one step count), so it is expressible only
    when the arrays with a gradient at ``t`` share their step count; the others keep theirs in
    the reference and are untouched by the step whatever count the port is given."""
    amsgrad = amsgrad_of(contract)
    out = ContractRun()
    p = tuple(round_to(np.asarray(a, dtype=np.float64), dtype) for a in problem.params0)
    states = ArrayStates.zeros(p, amsgrad)
    out.params.append(p)
    out.states.append(states.as_state(0))
    pin, rin = InputErrors.zeros(flat.size, amsgrad), InputErrors.zeros(flat.size, amsgrad)
    for t in range(1, problem.steps + 1):
        raw = tuple(round_to(g, dtype) for g in problem.gradient(t, p))
        g = masked(raw, None if problem.active is None else problem.active[t - 1])
        cs = contract_step(contract, flat, t, p, states, g, dtype, state_dtype, pin, rin)
        if t in schedule:
            k = common_step(states, g)
            if k is None:
                out.not_resynced.append(t)
            elif contract.lr_factors is not None and k != t - 1:
                # a scheduler advances on every step, the count only with a gradient: a reset
                # that takes the count alone cannot place the schedule (f_t, not f_{k+1})
                out.unplaced.append(t)
            else:
                cp = tuple(round_to(a, dtype) for a in p)
                cst = states.cast(state_dtype)
                z = InputErrors.zeros(flat.size, amsgrad)
                rs = contract_step(
                    contract, flat, t, cp, cst, g, dtype, state_dtype, z, z, floor=True
                )
                out.resync[t] = (
                    cp,
                    cst.as_state(k),
                    g,
                    rs.params,
                    rs.states.as_state(k + 1),
                    rs.ref,
                    rs.bounds,
                    rs.floor,
                )
        pin, rin = cs.port_next, cs.ref_next
        out.grads.append(g)
        out.free_bounds.append(cs.bounds)
        p, states = cs.params, cs.states
        out.params.append(p)
        out.states.append(states.as_state(max(states.steps, default=0)))
    return out
