"""Reference runs and comparisons: per-step re-synced and free-running, in ulps and budget fractions.

``ReferenceRun`` holds, for one (scenario, config, dtype), the reference trajectory computed from the
scenario's inputs rounded to the dtype, the free-running error bounds along it, and for every
re-synced step the reference recomputed from that step's inputs *cast to the port's dtype* (so
input rounding is never counted as port error) with its one-step bounds.

``compare_quantity`` turns a port value, a reference value and a bound into a ``Measure``: the
worst budget fraction (|port - ref| / bound, <= 1 passes), the worst error in ulps of the dtype at
the reference value, where it happened, and how many coordinates failed or could not be judged
(infinite bound: the dtype cannot resolve the quantity there).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import setadam_ref as R
from setadam_ref import Config, State

from .formats import round_to, ulp
from .scenarios import Arrays, Problem, Scenario
from .tolerance import Bounds, Flat, InputErrors, StepRef, comparison_bounds


@dataclass
class Worst:
    """Where a quantity was worst (largest budget fraction) over a comparison."""

    quantity: str
    fraction: float  # |port - ref| / budget; <= 1 passes; inf: non-finite or zero budget
    ulps: float  # |port - ref| in ulps of the dtype at the reference value
    step: int
    array: int | None
    index: tuple[int, ...] | None
    port_value: float
    ref_value: float
    budget: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "fraction": _json_float(self.fraction),
            "ulps": _json_float(self.ulps),
            "step": self.step,
            "array": self.array,
            "index": list(self.index) if self.index is not None else None,
            "port_value": _json_float(self.port_value),
            "ref_value": _json_float(self.ref_value),
            "budget": _json_float(self.budget),
        }


def _json_float(x: float) -> float | str:
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


@dataclass
class Measure:
    """Comparison of one quantity at one step."""

    worst: Worst
    n_fail: int
    n_unresolved: int
    n_nonfinite: int  # port non-finite where the reference is finite and the budget finite
    max_ulps: float


def compare_quantity(
    quantity: str,
    port: np.ndarray,
    ref: np.ndarray,
    bound: np.ndarray,
    dtype: str,
    flat: Flat | None,
    step: int,
    mask: np.ndarray | None = None,
    max_ulps: bool = False,
) -> Measure:
    """Compare flat ``port`` against flat ``ref`` with absolute bounds ``bound``.

    The worst coordinate is the one with the largest budget fraction (ties: largest error); its
    error in ulps is reported. ``max_ulps=True`` also computes the largest error in ulps over all
    coordinates (``Measure.max_ulps``; otherwise that of the worst coordinate).
    """
    port = np.asarray(port, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    bound = np.asarray(bound, dtype=np.float64)
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
    else:
        keep = np.ones(ref.shape, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(port - ref)
        if not np.all(np.isfinite(diff)):
            same = ~np.isfinite(ref) & ((port == ref) | (np.isnan(port) & np.isnan(ref)))
            diff = np.where(same, 0.0, diff)
            diff = np.where(np.isnan(diff), np.inf, diff)
        finite_b = np.isfinite(bound)
        frac = np.where(diff == 0, 0.0, diff / np.where(bound > 0, bound, 0.0))
        frac = np.where(np.isnan(frac), np.inf, frac)
        unresolved = keep & ~finite_b & (diff > 0)
        frac = np.where(finite_b & keep, frac, 0.0)
        if max_ulps:
            ulps = np.where(keep, diff / ulp(ref, dtype), 0.0)
    nonfinite = keep & ~np.isfinite(port) & np.isfinite(ref) & finite_b
    n = frac.size
    if n == 0:
        w = Worst(quantity, 0.0, 0.0, step, None, None, 0.0, 0.0, 0.0)
        return Measure(w, 0, 0, 0, 0.0)
    if np.any(frac > 0):
        k = int(np.argmax(frac))
    else:
        k = int(np.argmax(np.where(keep, diff, -1.0)))
    k_ulps = float(diff[k] / ulp(ref[k : k + 1], dtype)[0]) if keep[k] else 0.0
    if flat is not None and quantity != "cos2":
        arr, idx = flat.locate(k)
        array: int | None = arr
        index: tuple[int, ...] | None = idx
    else:
        array, index = k, ()
    w = Worst(
        quantity,
        float(frac[k]),
        k_ulps,
        step,
        array,
        index,
        float(port[k]),
        float(ref[k]),
        float(bound[k]),
    )
    return Measure(
        w,
        int(np.count_nonzero(frac > 1.0)),
        int(np.count_nonzero(unresolved)),
        int(np.count_nonzero(nonfinite)),
        float(np.max(ulps)) if max_ulps and ulps.size else k_ulps,
    )


# ----------------------------------------------------------------------------- reference runs


def cast_arrays(arrays: Any, dtype: str) -> Arrays:
    return tuple(round_to(np.asarray(a, dtype=np.float64), dtype) for a in arrays)


def cast_state(state: State, dtype: str) -> State:
    return State(
        step=state.step,
        m=cast_arrays(state.m, dtype),
        v=cast_arrays(state.v, dtype),
        vmax=None if state.vmax is None else cast_arrays(state.vmax, dtype),
    )


@dataclass
class ResyncStep:
    """Inputs of one re-synced step (cast to the port's dtype) and the reference from them."""

    t: int
    params: Arrays  # cast theta_{t-1}
    state: State  # cast state after t-1 steps
    grads: Arrays  # cast gradients of step t
    new_params: Arrays
    new_state: State
    ref: StepRef
    bounds: Bounds
    trace: Any


@dataclass
class ReferenceRun:
    """The reference side of one (scenario, config, dtype) comparison."""

    scenario: Scenario
    config: Config
    dtype: str
    state_dtype: str
    problem: Problem
    flat: Flat
    params: list[Arrays] = field(default_factory=list)  # T + 1 entries (free trajectory)
    states: list[State] = field(default_factory=list)
    grads: list[Arrays] = field(default_factory=list)  # T entries, cast
    free_bounds: list[Bounds] = field(default_factory=list)  # T entries
    resync: dict[int, ResyncStep] = field(default_factory=dict)
    error: str | None = None  # the reference itself could not run (non-finite): skip

    @property
    def steps(self) -> int:
        return self.problem.steps

    @property
    def layers(self) -> tuple[tuple[int, ...], ...] | None:
        return self.problem.layers


def resync_schedule(steps: int) -> list[int]:
    """Steps compared re-synced: all for short runs; 1..10, every 25th and the last otherwise."""
    if steps <= 60:
        return list(range(1, steps + 1))
    return sorted({*range(1, 11), *range(25, steps + 1, 25), steps})


def build_reference(
    scenario: Scenario,
    config: Config,
    dtype: str,
    state_dtype: str | None = None,
    quick: bool = False,
) -> ReferenceRun:
    problem = scenario.problem(quick)
    sdt = state_dtype or dtype
    flat = Flat.make([np.shape(p) for p in problem.params0], problem.layers)
    rr = ReferenceRun(scenario, config, dtype, sdt, problem, flat)
    p = cast_arrays(problem.params0, dtype)
    st = R.init(p, config)
    rr.params.append(p)
    rr.states.append(st)
    ein_p: InputErrors | None = None
    ein_r: InputErrors | None = None
    amsgrad = st.vmax is not None
    sched = set(resync_schedule(problem.steps))
    try:
        for t in range(1, problem.steps + 1):
            g = cast_arrays(problem.gradient(t, p), dtype)
            newp, newst, tr = R.step(p, g, st, config, problem.layers, trace=True)
            assert tr is not None
            sref = StepRef.from_trace(flat, p, st, newp, tr)
            if ein_p is None or ein_r is None:
                ein_p = ein_r = InputErrors.zeros(flat.offsets[-1], amsgrad)
            b, bp, br = comparison_bounds(config, sref, flat, dtype, ein_p, ein_r)
            ein_p, ein_r = bp.next_inputs(), br.next_inputs()
            if t in sched:
                cp = cast_arrays(p, dtype)
                cst = cast_state(st, sdt)
                rp, rst, rtr = R.step(cp, g, cst, config, problem.layers, trace=True)
                assert rtr is not None
                rref = StepRef.from_trace(flat, cp, cst, rp, rtr)
                rb = comparison_bounds(config, rref, flat, dtype)[0]
                rr.resync[t] = ResyncStep(t, cp, cst, g, rp, rst, rref, rb, rtr)
            rr.grads.append(g)
            rr.free_bounds.append(b)
            p, st = newp, newst
            rr.params.append(p)
            rr.states.append(st)
    except (R.NonFiniteError, ValueError) as exc:
        rr.error = f"reference cannot run this scenario in {dtype}: {exc}"
    return rr


class ReferenceCache:
    """LRU cache of ``ReferenceRun`` keyed by (scenario, quick, config, dtype, state dtype)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._d: OrderedDict[tuple[Any, ...], ReferenceRun] = OrderedDict()

    def get(
        self, scenario: Scenario, config: Config, dtype: str, state_dtype: str | None, quick: bool
    ) -> ReferenceRun:
        key = (scenario.name, scenario.seed, quick, config, dtype, state_dtype or dtype)
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        rr = build_reference(scenario, config, dtype, state_dtype, quick)
        self._d[key] = rr
        if len(self._d) > self.capacity:
            self._d.popitem(last=False)
        return rr


DEFAULT_CACHE = ReferenceCache()


def stage_reference(rs: ResyncStep, name: str) -> np.ndarray | None:
    """Flat reference values of a stage name at a re-synced step (None if not in the trace)."""
    r = rs.ref
    table: dict[str, np.ndarray | None] = {
        "m": r.m,
        "v": r.v,
        "vmax": r.vmax,
        "denom": r.denom,
        "down_scaling": r.v_scaled,
        "epsilon_embedding": r.w,
        "down_translating": r.w_translated,
        "update": r.update,
        "params": r.theta1,
        "grad": r.grad,
    }
    return table.get(name)
