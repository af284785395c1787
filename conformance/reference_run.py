"""Reference runs: the reference trajectory of a scenario in a dtype, with its error budgets.

``ReferenceRun`` holds, for one (problem, config, dtype), the reference trajectory computed from
the problem's inputs rounded to the dtype, the free-running error bounds along it, and for every
re-synced step the reference recomputed from that step's inputs *cast to the port's dtype* (so
input rounding is never counted as port error) with its one-step bounds. The bounds come from
:mod:`conformance.tolerance`; comparing a port against them is :mod:`conformance.compare`'s job.

A run is *kept* (every step's arrays, shared by every port of its dtype through the cache) or,
when that would exceed ``STREAM_BYTES``, *streamed*: it keeps no step, and ``free_steps`` /
``resync_steps`` recompute each step as the comparison consumes it and release it when the next
is asked for (only the compared budgets, computed in chunks of coordinates from the step's
values in place: :mod:`conformance.tolerance.chunked`; no trace). Memory then stays within 4
parameter-set copies of what one step must hold (its floor: the reference step's inputs,
outputs and trace, the flat reference a re-synced comparison reads, the carried trajectory and
input errors), whatever the horizon; the cost is one recomputation per port
(docs/src/guide/harness.md, "The reference at scale").
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import setadam_ref as R
from setadam_ref import Config, State
from setadam_ref import stage_names as N

from .contract import Contract, contract_of
from .contract_reference import contract_run
from .formats import round_to
from .layout import Flat
from .scenarios import Arrays, Problem, Scenario
from .tolerance import Bounds, InputErrors, StepRef, comparison_bounds
from .tolerance.chunked import StepSource, chunked_comparison_bounds


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
    #: the systematic test's floor per coordinate where it is not the run config's (a contract
    #: step: per group, ``systematic_floor.floor``); None: formed from the run's config
    floor: np.ndarray | None = None

    def for_diagnosis(self) -> ResyncStep:
        """This step as the diagnosis's evidence keeps it: the budgets it reads (params, m, v)
        and no trace; the driver holds a window of these while it goes on."""
        kept = Bounds({k: v for k, v in self.bounds.values.items() if k in FREE_COMPARED})
        return dataclasses.replace(self, bounds=kept, trace=None)


@dataclass
class FreeStep:
    """Step ``t`` of the free-running reference: its gradients, theta_t, state and budget."""

    t: int
    grads: Arrays
    params: Arrays
    state: State
    bounds: Bounds


#: a run whose kept steps would exceed this many bytes is streamed (:class:`ReferenceRun`):
#: huge_layer (2.9 GiB kept); big_layers and many_tensors (180 and 100 MiB) stay kept, because
#: streaming recomputes a run per port, about 40 s more reference CPU in the default run
#: (docs/src/guide/harness.md, "The reference at scale")
STREAM_BYTES = 256 * 2**20
#: parameter-set copies one kept step costs (trajectory, state, gradients, free-running bounds
#: of every stage, a re-synced step with its trace and bounds; measured, float64 SET-Adam)
KEPT_COPIES_PER_STEP = 45
#: the budgets of a streamed free-running step that are compared (the others are dropped)
FREE_COMPARED = ("params", N.M, N.V)
#: the budgets' parts a free-running recursion carries into the next step (its input errors)
CARRIED = ("params", N.M, N.V, N.VMAX)


@dataclass
class ReferenceRun:
    """The reference side of one (problem, config, dtype) comparison; ``name`` says which."""

    name: str
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
    contract: Contract | None = None  # groups / lr schedule / sparse (conformance.contract)
    notes: list[str] = field(default_factory=list)  # what of the schedule was not compared
    #: recomputed as consumed (``free_steps``, ``resync_steps``) instead of kept: the lists above
    #: stay empty, so a run cached for every port of a dtype holds no step
    streamed: bool = False

    @property
    def steps(self) -> int:
        return self.problem.steps

    @property
    def params0(self) -> Arrays:
        """theta_0 rounded to the dtype."""
        return self.params[0] if self.params else cast_arrays(self.problem.params0, self.dtype)

    def resync_steps(self) -> Iterator[ResyncStep]:
        """The re-synced steps in order (kept ones, or computed one at a time when streamed)."""
        if not self.streamed:
            yield from (self.resync[t] for t in sorted(self.resync))
            return
        for _, rs in _walk(self, free=False, resync=True):
            if rs is not None:
                yield rs
            del rs  # not alive while the next step is computed

    def free_steps(self) -> Generator[FreeStep, None, None]:
        """Steps 1..T of the free-running reference (kept, or computed as consumed)."""
        if not self.streamed:
            for t in range(1, self.steps + 1):
                yield FreeStep(
                    t, self.grads[t - 1], self.params[t], self.states[t], self.free_bounds[t - 1]
                )
            return
        for fs, _ in _walk(self, free=True, resync=False):
            assert fs is not None
            yield fs
            del fs

    def open_grads(self, t: int) -> Arrays:
        """The cast gradients of step ``t`` of an open loop (kept, or cast again when streamed:
        the same rounding of the same inputs, so bitwise the streamed step's)."""
        if self.grads:
            return self.grads[t - 1]
        assert not self.problem.closed_loop
        return cast_arrays(self.problem.gradient(t, self.params0), self.dtype)

    def free_window(self, n: int) -> tuple[list[Arrays], list[np.ndarray]]:
        """The gradients and parameter budgets of steps 1..n (the black-box diagnosis's)."""
        grads: list[Arrays] = []
        budgets: list[np.ndarray] = []
        steps = self.free_steps()
        for fs in steps:  # read each step before the next: a streamed one is released then
            grads.append(fs.grads)
            budgets.append(np.asarray(fs.bounds[N.PARAMS]))
            if len(grads) >= n:
                break
        steps.close()
        return grads, budgets

    @property
    def layers(self) -> tuple[tuple[int, ...], ...] | None:
        return self.problem.layers


class FreeRunningBudget:
    """The budget of a free-running comparison, composed step by step along a reference run.

    The budget of |port - reference| at step t is the port's bound in ``dtype`` plus the
    reference's own float64 bound (:func:`conformance.tolerance.comparison_bounds`), each with
    the input errors its side carried out of step t - 1. The harness starts from exact inputs
    (it feeds the port the inputs rounded to its dtype and runs the reference from those);
    a golden vector starts from the rounding errors of its float64 inputs.
    """

    def __init__(
        self,
        config: Config,
        flat: Flat,
        dtype: str,
        port_inputs: InputErrors,
        state_dtype: str | None = None,
    ) -> None:
        self.config = config
        self.flat = flat
        self.dtype = dtype
        self.state_dtype = state_dtype or dtype
        self._port = port_inputs
        self._ref = InputErrors.zeros(flat.size, port_inputs.vmax is not None)

    def next(self, ref: StepRef, grad_error: np.ndarray | None = None) -> Bounds:
        """The budget of the step ``ref``; ``grad_error`` bounds the port's gradient's error."""
        if grad_error is not None:
            self._port.grad = grad_error
        total, bp, br = comparison_bounds(
            self.config, ref, self.flat, self.dtype, self._port, self._ref,
            state_dtype=self.state_dtype,
        )  # fmt: skip
        self._port, self._ref = bp.next_inputs(), br.next_inputs()
        return total

    def next_streamed(self, src: StepSource) -> Bounds:
        """:meth:`next` of a streamed step: only the compared budgets (``FREE_COMPARED``),
        computed in chunks from the step's values in place (bitwise :meth:`next`'s)."""
        total, bp, br = chunked_comparison_bounds(
            self.config, src, self.flat, self.dtype, self._port, self._ref,
            state_dtype=self.state_dtype, keep=FREE_COMPARED, parts=CARRIED,
        )  # fmt: skip
        self._port, self._ref = bp.next_inputs(), br.next_inputs()
        return total


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
    stream: bool | None = None,
) -> ReferenceRun:
    """The reference run of ``scenario`` (its quick horizon when ``quick``)."""
    problem = scenario.problem(quick)
    return build_reference_for(problem, config, dtype, state_dtype, scenario.name, stream)


def build_reference_for(
    problem: Problem,
    config: Config,
    dtype: str,
    state_dtype: str | None = None,
    name: str = "problem",
    stream: bool | None = None,
) -> ReferenceRun:
    """The reference run of ``problem``: inputs rounded to ``dtype``, state to ``state_dtype``.

    ``stream`` (default: when the kept steps would exceed ``STREAM_BYTES``) makes a run that
    keeps no step: it checks here that the reference runs (the untraced trajectory) and
    recomputes each step as :meth:`ReferenceRun.free_steps` / ``resync_steps`` are consumed.
    A contract scenario's run is always kept."""
    sdt = state_dtype or dtype
    flat = Flat.make([np.shape(p) for p in problem.params0], problem.layers)
    rr = ReferenceRun(name, config, dtype, sdt, problem, flat)
    contract = contract_of(problem, config)
    if contract is not None:
        return _contract_reference(rr, contract)
    if stream is None:
        stream = KEPT_COPIES_PER_STEP * problem.steps * flat.size * 8 > STREAM_BYTES
    rr.streamed = stream
    try:
        if stream:
            for _ in _walk(rr, free=False, resync=False):
                pass
            return rr
        rr.params.append(rr.params0)
        rr.states.append(R.init(rr.params[0], config))
        for fs, rs in _walk(rr, free=True, resync=True):
            assert fs is not None
            if rs is not None:
                rr.resync[fs.t] = rs
            rr.grads.append(fs.grads)
            rr.free_bounds.append(fs.bounds)
            rr.params.append(fs.params)
            rr.states.append(fs.state)
    except (R.NonFiniteError, ValueError) as exc:
        rr.error = f"reference cannot run this scenario in {dtype}: {exc}"
    return rr


def _walk(
    rr: ReferenceRun, free: bool, resync: bool
) -> Iterator[tuple[FreeStep | None, ResyncStep | None]]:
    """Steps 1..T of ``rr``'s reference: the free-running step with its budget when ``free``
    (else the untraced trajectory only: the fast path, bitwise the same), and the re-synced
    step where scheduled when ``resync``. A streamed run yields only the compared budgets and
    no trace; each step is dropped once the consumer moves on."""
    problem, config, dtype, flat = rr.problem, rr.config, rr.dtype, rr.flat
    keep_all = not rr.streamed
    p = rr.params0
    st = R.init(p, config)
    budget = None  # a pass without free-running budgets holds no input errors
    if free:
        ein = InputErrors.zeros(flat.size, st.vmax is not None)
        budget = FreeRunningBudget(config, flat, dtype, ein, rr.state_dtype)
        del ein  # the budget's until its first step replaces it
    sched = set(resync_schedule(problem.steps)) if resync else set()
    for t in range(1, problem.steps + 1):
        g = cast_arrays(problem.gradient(t, p), dtype)
        fs: FreeStep | None = None
        if budget is not None:
            newp, newst, tr = R.step(p, g, st, config, problem.layers, trace=True)
            assert tr is not None
            if keep_all:
                sref = StepRef.from_trace(flat, p, st, newp, tr)
                del tr  # the bounds read the flat StepRef: the trace need not live through them
                b = budget.next(sref)
                del sref
            else:  # the bounds read the trace in place, chunk by chunk
                b = budget.next_streamed(StepSource.of_trace(p, st, newp, tr))
                del tr
            fs = FreeStep(t, g, newp, newst, b)
            del b  # held by fs alone: released with it
        rs = _resync_step(rr, t, p, st, g, keep_all) if t in sched else None
        if not free and keep_all:
            newp, newst, _ = R.step(p, g, st, config, problem.layers, trace=False)
        yield fs, rs
        if fs is not None and not keep_all:
            fs.bounds = Bounds()  # a streamed step's budgets live until the next step is asked for
        del fs, rs
        if not free and not keep_all:  # after the re-synced step is consumed: not alive with it
            newp, newst, _ = R.step(p, g, st, config, problem.layers, trace=False)
        del g  # not alive while the next step's is cast
        p, st = newp, newst


def _resync_step(
    rr: ReferenceRun, t: int, p: Arrays, st: State, g: Arrays, keep_trace: bool
) -> ResyncStep:
    """The re-synced step ``t``: the reference from theta_{t-1}, state cast to the port's."""
    cp = cast_arrays(p, rr.dtype)
    cst = cast_state(st, rr.state_dtype)
    rp, rst, rtr = R.step(cp, g, cst, rr.config, rr.problem.layers, trace=True)
    assert rtr is not None
    rref = StepRef.from_trace(rr.flat, cp, cst, rp, rtr, views=not keep_trace)
    if keep_trace:
        rb = comparison_bounds(rr.config, rref, rr.flat, rr.dtype, state_dtype=rr.state_dtype)[0]
    else:  # nothing compares the trace itself: not alive through the bounds, done in chunks
        rtr = None
        # the outputs as views of the flat reference (bitwise them; read by nothing but us)
        rp = rr.flat.split(rref.theta1)
        vmax = None if rst.vmax is None or rref.vmax is None else rr.flat.split(rref.vmax)
        rst = State(rst.step, rr.flat.split(rref.m), rr.flat.split(rref.v), vmax)
        src = StepSource.of_ref(rref, rr.flat)
        rb = chunked_comparison_bounds(
            rr.config, src, rr.flat, rr.dtype, state_dtype=rr.state_dtype
        )[0]
    return ResyncStep(t, cp, cst, g, rp, rst, rref, rb, rtr)


def _contract_reference(rr: ReferenceRun, contract: Contract) -> ReferenceRun:
    """``rr`` filled from :func:`conformance.contract_reference.contract_run`."""
    rr.contract = contract
    sched = set(resync_schedule(rr.problem.steps))
    try:
        cr = contract_run(rr.problem, contract, rr.flat, rr.dtype, rr.state_dtype, sched)
    except (R.NonFiniteError, ValueError) as exc:
        rr.error = f"reference cannot run this scenario in {rr.dtype}: {exc}"
        return rr
    rr.params, rr.states, rr.free_bounds = cr.params, cr.states, cr.free_bounds
    rr.grads = cr.grads  # type: ignore[assignment]  # None: no gradient at that step
    for t, (cp, cst, g, rp, rst, rref, rb, fl) in cr.resync.items():
        rr.resync[t] = ResyncStep(t, cp, cst, g, rp, rst, rref, rb, None, fl)  # type: ignore[arg-type]
    if cr.not_resynced:
        rr.notes.append(
            f"re-synced steps {cr.not_resynced} not compared: the arrays with a gradient there "
            "have different step counts, and a reset takes one (free-running compares them)"
        )
    if cr.unplaced:
        rr.notes.append(
            f"re-synced steps {cr.unplaced} not compared: an earlier step left the arrays with "
            "a gradient there without one, so the step count a reset takes is not the lr "
            "schedule's position (t - 1; free-running compares them)"
        )
    return rr


class ReferenceCache:
    """LRU cache of ``ReferenceRun`` keyed by (scenario, quick, config, dtype, state dtype).

    Thread-safe: ports checked concurrently from threads share it, and a run that one thread is
    building is waited for by the others instead of being built twice."""

    def __init__(self, capacity: int = 64, stream: bool | None = None) -> None:
        self.capacity = capacity
        self.stream = stream  # as build_reference's (None: by size)
        self._d: OrderedDict[tuple[Any, ...], ReferenceRun] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[Any, ...], threading.Event] = {}

    def get(
        self, scenario: Scenario, config: Config, dtype: str, state_dtype: str | None, quick: bool
    ) -> ReferenceRun:
        key = (scenario.name, scenario.seed, quick, config, dtype, state_dtype or dtype)
        while True:
            with self._lock:
                if key in self._d:
                    self._d.move_to_end(key)
                    return self._d[key]
                done = self._building.get(key)
                if done is None:
                    done = self._building[key] = threading.Event()
                    break
            done.wait()  # another thread builds it; take it from the cache (or build on failure)
        try:
            rr = build_reference(scenario, config, dtype, state_dtype, quick, self.stream)
            with self._lock:
                self._d[key] = rr
                if len(self._d) > self.capacity:
                    self._d.popitem(last=False)
        finally:
            with self._lock:
                del self._building[key]
            done.set()
        return rr


DEFAULT_CACHE = ReferenceCache()


def stage_reference(rs: ResyncStep, name: str) -> np.ndarray | None:
    """Flat reference values of a stage name at a re-synced step (None if not in the trace)."""
    r = rs.ref
    table: dict[str, np.ndarray | None] = {
        N.M: r.m,
        N.V: r.v,
        N.VMAX: r.vmax,
        N.DENOM: r.denom,
        N.DOWN_SCALING: r.v_scaled,
        N.EPSILON_EMBEDDING: r.w,
        N.DOWN_TRANSLATING: r.w_translated,
        N.UPDATE: r.update,
        N.PARAMS: r.theta1,
        N.GRAD: r.grad,
    }
    return table.get(name)
