"""The reference run at scale: one reference step over 2^22 + 1 coordinates, and run memory.

    python -m conformance.bench.reference_scale [--repeats 3]

1. **Step time.** ``setadam_ref.step`` over one layer of ``HUGE_LAYER_SIZE`` float64
   coordinates, untraced (the fast path, ``setadam_ref.fast``) and traced (the plain form the
   re-synced comparisons need), SET-Adam and Adam; best of ``--repeats``.
2. **Memory.** ``tracemalloc`` peak and what stays held over ``build_reference`` of
   ``big_layers`` and ``many_tensors`` and both passes of the comparison (float64), kept and
   streamed, in copies of the scenario's parameter set (8 bytes per coordinate); one step's
   working set by part, and a streamed run's peak by pass.
3. **Budget time.** ``bounds_seconds``: one re-synced step's budget, whole-step against
   chunked, in the same process.

Measured (2 shared cores, load 7.5): SET-Adam 0.17 s untraced, 0.36 s traced; Adam 0.14 s and
0.32 s. ``big_layers`` float64 SET-Adam, from just before the build through both passes of the
comparison (load 12): kept 90.0 parameter-set copies held, peak 113.0; streamed 1.0 held, peak
28.3 at 2 steps and 28.8 at 1 (57 before the budgets were chunked): the re-synced pass peaks at
28.8 (its floor 27) and the free-running one at 24.8 (floor 22), within 4 copies of what a step
must hold (``conformance/tests/test_reference_memory.py``; docs/src/guide/harness.md, "The
reference at scale"). ``step_parts``: the traced step 9, ``StepRef`` 11, the whole-step bounds
16 held (30 at their peak), the chunked ones 6 (free-running) and 8 (re-synced).
"""

from __future__ import annotations

import argparse
import collections
import time
import tracemalloc
from typing import Any

import numpy as np

import setadam_ref as R
from setadam_ref import AdamConfig, Config, SETAdamConfig

from ..layout import Flat
from ..reference_run import CARRIED, FREE_COMPARED, ReferenceRun, build_reference
from ..scenarios import HUGE_LAYER_SIZE, get
from ..tolerance import StepRef, comparison_bounds
from ..tolerance.chunked import StepSource, chunked_comparison_bounds


def step_seconds(config: Config, trace: bool, repeats: int) -> float:
    """Best wall time of one reference step over ``HUGE_LAYER_SIZE`` coordinates."""
    rng = np.random.default_rng(0)
    p = (rng.standard_normal(HUGE_LAYER_SIZE),)
    g = (rng.standard_normal(HUGE_LAYER_SIZE),)
    st = R.init(p, config)
    R.step(p, g, st, config, None, trace=trace)  # warm the pool and the allocator
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        R.step(p, g, st, config, None, trace=trace)
        best = min(best, time.perf_counter() - t0)
    return best


def bounds_seconds(name: str, repeats: int) -> tuple[float, float]:
    """Best wall time of one float64 SET-Adam step's re-synced budget of ``name`` (step 1):
    whole-step (:func:`~conformance.tolerance.comparison_bounds`, what a kept run computes)
    and chunked (:func:`~conformance.tolerance.chunked.chunked_comparison_bounds`, what a
    streamed run computes), in the same process."""
    sc = get(name)
    problem = sc.problem(True)
    cfg = sc.config("setadam")
    flat = Flat.make([np.shape(p) for p in problem.params0], problem.layers)
    p = tuple(np.array(a, dtype=np.float64) for a in problem.params0)
    st = R.init(p, cfg)
    p1, _, tr = R.step(p, problem.gradient(1, p), st, cfg, problem.layers, trace=True)
    assert tr is not None
    ref = StepRef.from_trace(flat, p, st, p1, tr)
    src = StepSource.of_ref(ref, flat)

    def whole() -> object:
        return comparison_bounds(cfg, ref, flat, "float64")

    def chunked() -> object:
        return chunked_comparison_bounds(cfg, src, flat, "float64")

    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for k, run in enumerate((whole, chunked)):
            t0 = time.perf_counter()
            run()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[0], best[1]


def run_copies(name: str = "big_layers", quick: bool = False) -> tuple[float, float]:
    """(held, peak) of a scenario's float64 reference run as the driver consumes it, in copies."""
    held, peak, _ = run_memory(name, quick)
    return held, peak


def _nbytes(obj: Any, seen: set[int]) -> int:
    """Bytes of the distinct NumPy arrays reachable from ``obj`` (containers, dataclasses)."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes) if obj.base is None or id(obj.base) not in seen else 0
    if isinstance(obj, dict):
        return sum(_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v, seen) for v in obj)
    fields = getattr(obj, "__dataclass_fields__", None) or getattr(obj, "_fields", None)
    if fields:
        return sum(_nbytes(getattr(obj, f), seen) for f in fields)
    return 0


def _consume(rr: ReferenceRun, peaks: dict[str, int] | None = None) -> None:
    """Both passes of the driver over ``rr`` (re-synced, then free-running), each step dropped
    before the next is computed (what the comparison of a passing port keeps of the reference;
    the driver's diagnosis window is bounded apart: ``conformance.drive._HISTORY``); ``peaks``
    receives each pass's ``tracemalloc`` peak (bytes)."""
    for name, steps in (("resync", rr.resync_steps), ("free", rr.free_steps)):
        if peaks is not None:
            tracemalloc.reset_peak()
        collections.deque(steps(), maxlen=0)
        if peaks is not None:
            peaks[name] = tracemalloc.get_traced_memory()[1]


def pass_peaks(name: str, quick: bool = False, stream: bool | None = None) -> dict[str, float]:
    """The peak of each part of :func:`run_memory`'s measurement (the build, the re-synced
    pass, the free-running pass), measured the same way, in copies of the parameter set."""
    sc = get(name)
    problem = sc.problem(quick)
    size = sum(np.asarray(a).nbytes for a in problem.params0)
    peaks: dict[str, int] = {}
    tracemalloc.start()
    try:
        rr = build_reference(sc, sc.config("setadam"), "float64", quick=quick, stream=stream)
        peaks["build"] = tracemalloc.get_traced_memory()[1]
        _consume(rr, peaks)
    finally:
        tracemalloc.stop()
    return {k: v / size for k, v in peaks.items()}


def run_memory(
    name: str, quick: bool = False, stream: bool | None = None
) -> tuple[float, float, dict[str, float]]:
    """(held, peak, held by part) of a scenario's float64 SET-Adam reference run, in copies of
    its parameter set, measured with ``tracemalloc`` from just before ``build_reference`` (the
    scenario's own inputs, theta_0 and the gradients, already built) through both passes of
    the comparison: ``held`` is what the run keeps once built (what the cache shares), ``peak``
    the most allocated at any time. The parts are the distinct arrays each part of the run keeps
    (free trajectory, states, gradients, free-running bounds, re-synced steps less their traces,
    the traces): all empty when the run streams. ``stream`` as in ``build_reference``."""
    sc = get(name)
    problem = sc.problem(quick)
    size = sum(np.asarray(a).nbytes for a in problem.params0)
    tracemalloc.start()
    try:
        rr = build_reference(sc, sc.config("setadam"), "float64", quick=quick, stream=stream)
        held = tracemalloc.get_traced_memory()[0]
        _consume(rr)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seen: set[int] = {
        id(a) for g in (problem.grads or ()) for a in g
    }  # the scenario's, not the run's
    parts = {
        "params": _nbytes(rr.params, seen), "states": _nbytes(rr.states, seen),
        "grads": _nbytes(rr.grads, seen), "free_bounds": _nbytes(rr.free_bounds, seen),
        "resync traces": _nbytes([r.trace for r in rr.resync.values()], seen),
        "resync (rest)": _nbytes(rr.resync, seen),
    }  # fmt: skip
    return held / size, peak / size, {k: v / size for k, v in parts.items()}


def step_parts(name: str = "big_layers") -> dict[str, float]:
    """One float64 SET-Adam reference step's working set by part, in parameter-set copies: the
    traced step's outputs and trace (``setadam_ref``), the flat ``StepRef`` the bounds read, and
    the bounds (total, port and reference parts) of :func:`conformance.tolerance.comparison_bounds`."""
    sc = get(name)
    problem = sc.problem(True)
    cfg = sc.config("setadam")
    flat = Flat.make([np.shape(p) for p in problem.params0], problem.layers)
    size = sum(np.asarray(a).nbytes for a in problem.params0)
    p = tuple(np.array(a, dtype=np.float64) for a in problem.params0)
    st = R.init(p, cfg)
    g = problem.gradient(1, p)
    seen: set[int] = {id(a) for a in (*p, *g, *st.m, *st.v)}
    p1, st1, tr = R.step(p, g, st, cfg, problem.layers, trace=True)
    assert tr is not None
    ref = StepRef.from_trace(flat, p, st, p1, tr)
    out = {"step outputs": _nbytes((p1, st1), seen), "trace": _nbytes(tr, seen)}
    out["StepRef"] = _nbytes(ref, seen)
    out["bounds"] = _nbytes(comparison_bounds(cfg, ref, flat, "float64"), seen)
    src = StepSource.of_trace(p, st, p1, tr)
    kept = FREE_COMPARED
    out["bounds, chunked (free)"] = _nbytes(
        chunked_comparison_bounds(cfg, src, flat, "float64", keep=kept, parts=CARRIED), seen
    )
    out["bounds, chunked (re-synced)"] = _nbytes(
        chunked_comparison_bounds(cfg, src, flat, "float64")[0], seen
    )
    return {k: v / size for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    for cfg in (SETAdamConfig(lr=1e-2), AdamConfig(lr=1e-2)):
        for trace in (False, True):
            s = step_seconds(cfg, trace, args.repeats)
            kind = "traced (plain)" if trace else "untraced (fast)"
            print(f"{type(cfg).__name__:14s} {kind:16s} {s:.3f} s per step of {HUGE_LAYER_SIZE}")
    print("one step's working set by part: " + _fmt(step_parts("big_layers")))
    for name in ("big_layers", "huge_layer"):
        whole, chunked = bounds_seconds(name, args.repeats)
        print(
            f"{name} re-synced budget: whole-step {whole:.3f} s, chunked {chunked:.3f} s "
            f"(ratio {chunked / whole:.2f})"
        )
    for name in ("big_layers", "many_tensors"):
        for quick, stream in ((False, False), (True, True), (False, True)):
            held, peak, parts = run_memory(name, quick, stream)
            kind = "streamed" if stream else "kept"
            steps = get(name).problem(quick).steps
            print(f"{name} ({steps} steps, {kind}): {held:.1f} copies held, peak {peak:.1f}")
            if not stream:
                print("  held by part: " + _fmt(parts))
            else:
                print("  peak by pass: " + _fmt(pass_peaks(name, quick, stream)))
    return 0


def _fmt(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in parts.items())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
