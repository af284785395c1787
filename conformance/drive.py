"""The port run: drive one port through one scenario, step by step, and compare every step.

For a scenario the driver takes the reference run (:mod:`conformance.reference_run`) and a port
session (:mod:`conformance.session`), then

1. **re-synced** steps: before each scheduled step t the port is reset to the reference's
   theta_{t-1} and state (cast to the port's dtypes) and steps once with g_t; its parameters, m,
   v and recorded stages are compared against the one-step reference and budget, so a one-step
   error is never blamed on accumulation;
2. **free-running**: the port runs the whole horizon from theta_0 on its own; its trajectory is
   compared against the reference trajectory with the composed free-running budget (open loop;
   closed-loop runs are reported, not judged: the gradient's feedback on errors is unbounded).

Every comparison is :func:`conformance.compare.compare_quantity`; what goes wrong is written as a
:class:`~conformance.results.Failure`. For the diagnosis the driver keeps the first failing
re-synced step of every failing scenario (with a few steps around it) as
:class:`~conformance.results.Evidence`, the port's free-running parameters in every failing
open-loop scenario (at most ``_FREE_STEPS`` steps, as a ``catalogue.FreeRun``), and, once, why the
port's state could not be re-synced when it could not.

A scenario ends ``pass`` only when at least one comparison was judged and none failed;
``not_judged`` (with the reason) when nothing was: a port that cannot be re-synced on a
closed-loop scenario. A port that hangs or whose process dies is a failure of the scenario
it was in, and the driver stops (``lost`` says why); a port that cannot be set up here
(import, calling convention, device) makes the scenario ``error`` and stops the driver too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from setadam_ref import Config
from setadam_ref import stage_names as N

from .catalogue import FreeRun, free_run_of
from .compare import compare_quantity
from .interface import DTYPES, PortState
from .layout import Flat
from .port_arrays import plain_reason as _plain
from .port_arrays import validate_arrays
from .reference_run import ReferenceCache, ReferenceRun, ResyncStep, cast_arrays, stage_reference
from .results import Evidence, Failure, Measure, PortResult, ScenarioResult, Supports
from .scenario_notes import COMPILED as _COMPILED
from .scenario_notes import CONTRACT as _CONTRACT_NOTE
from .scenario_notes import RESUMED as _RESUMED
from .scenario_notes import UNJUDGED_STATE as _UNJUDGED_STATE
from .scenario_notes import UNREAD_STATE
from .scenarios import Scenario
from .session import (
    PortDied,
    PortInterfaceError,
    PortLost,
    PortSession,
    PortSetupError,
    describe_exception,
)
from .step_batches import FreeSteps, ResyncSteps
from .systematic import SystematicStats

STATE_QUANTITIES: tuple[str, ...] = (N.M, N.V)
#: steps of evidence kept before and after the first failing re-synced step (the diagnosis tells
#: step-onset bugs apart with them)
_HISTORY = 3
_AFTER = 2
#: failing scenarios whose re-synced evidence is kept besides the first, and free-running steps
#: kept per failing scenario (the black-box diagnosis needs no more: an entry is ruled out early)
_OTHER_SCENARIOS = 8
_FREE_STEPS = 64


class _Abort(Exception):
    """Stop driving this port (it was lost, or cannot be set up here)."""


class ScenarioDriver:
    """Drives one port (through ``session``) through scenarios; fills ``result``."""

    def __init__(
        self,
        session: PortSession,
        result: PortResult,
        base_config: Config | None,
        supports: Supports | None,
        quick: bool,
        judge_state: bool,
        cache: ReferenceCache,
        max_failures: int,
    ) -> None:
        self.session = session
        self.r = result
        self.base = base_config
        self.supports = supports
        self.quick = quick
        self.judge_state = judge_state
        self.cache = cache
        self.max_failures = max_failures
        self.evidence: Evidence | None = None
        #: the first failing re-synced step of each other failing scenario (with its history)
        self.other_evidence: list[Evidence] = []
        #: the port's free-running parameters in each failing open-loop scenario
        self.free_runs: list[FreeRun] = []
        #: the same of the contract scenarios (conformance.contract_causes ranks them)
        self.contract_evidence: list[Evidence] = []
        self.contract_runs: list[tuple[ReferenceRun, list[np.ndarray]]] = []
        #: why the port's state cannot be re-synced (the first time it said so), else None
        self.state_note: str | None = None
        #: why the port is no longer driven (it hung, died or cannot be set up), else None
        self.lost: str | None = None
        self.setup_error = False
        self._seen: set[tuple[str, str, str, str]] = set()
        self._state_dtype = result.dtype
        #: running sums of the signed errors of re-synced steps (the statistical verdict)
        self.systematic = SystematicStats()

    # -- bookkeeping
    def fail(self, f: Failure, sr: ScenarioResult | None = None) -> None:
        if sr is not None:
            sr.status = "fail"
        key = (f.scenario, f.mode, f.stage or "", f.kind)
        if key in self._seen or len(self.r.failures) >= self.max_failures:
            self.r.failures_not_listed += 1
            return
        self._seen.add(key)
        self.r.failures.append(f)

    def _full(self) -> bool:
        return len(self.r.failures) >= self.max_failures

    def _lost(
        self, sc: Scenario, mode: str, t: int | None, what: str, exc: PortLost, sr: ScenarioResult
    ) -> None:
        """The port hung or its process died during ``what``: a failure; stop driving it."""
        died = isinstance(exc, PortDied)
        msg = f"{exc} during {what} of scenario {sc.name}"
        sr.reason = msg if died else f"port hung: {msg}"
        self.lost = sr.reason
        self.fail(Failure(sc.name, mode, t, None, "crash" if died else "timeout", sr.reason), sr)
        raise _Abort

    def _setup_error(self, exc: PortSetupError, sr: ScenarioResult) -> None:
        """The port cannot be set up here (not its arithmetic): an error; stop driving it."""
        sr.status, sr.reason = "error", str(exc)
        self.lost = str(exc)
        self.setup_error = True
        raise _Abort

    # -- one scenario
    def run(self, sc: Scenario) -> ScenarioResult:
        t0 = time.perf_counter()
        alg = self.r.algorithm
        sr = ScenarioResult(sc.name, "pass")
        try:
            cfg = sc.config(alg, self.base)
        except (ValueError, TypeError) as exc:
            sr.status, sr.reason = "skip", f"config not expressible: {exc}"
            return sr
        if not sc.applies_to(alg, self.r.dtype if self.r.dtype in DTYPES else None):
            sr.status, sr.reason = "skip", f"scenario does not apply to {alg} in {self.r.dtype}"
            return sr
        try:
            why = self._supports(sc, cfg, sr)
            if why:
                sr.status, sr.reason = "skip", why
                return sr
            self._scenario(sc, cfg, sr)
        except _Abort:
            pass
        except Exception as exc:  # the harness's own code: never blamed on the port
            sr.status = "error"
            sr.reason = f"harness error while judging: {describe_exception(exc)}"
        if sr.status == "pass" and not sr.judged:
            sr.status = "not_judged"
            sr.reason = "; ".join(n for n in (sr.reason, *sr.notes) if n) or "nothing compared"
        sr.duration_s = time.perf_counter() - t0
        return sr

    def not_run(self, sc: Scenario) -> ScenarioResult:
        """The record of a scenario not run because the port was lost earlier."""
        return ScenarioResult(sc.name, "not_judged", f"not run: {self.lost}")

    def _supports(self, sc: Scenario, cfg: Config, sr: ScenarioResult) -> str | None:
        try:
            if self.supports is not None:
                return self.supports(cfg)
            return self.session.supports(cfg)
        except PortSetupError as exc:
            self._setup_error(exc, sr)
        except PortLost as exc:
            self._lost(sc, "setup", None, "the check of what the port supports", exc, sr)
        return None  # pragma: no cover - both handlers raise

    def _make_port(self, sc: Scenario, cfg: Config, sr: ScenarioResult) -> bool:
        try:
            info = self.session.make(cfg)
        except PortLost as exc:
            self._lost(sc, "setup", None, "the construction of the port", exc, sr)
        except PortSetupError as exc:
            self._setup_error(exc, sr)
        except PortInterfaceError as exc:
            sr.reason = str(exc)
            self.fail(Failure(sc.name, "setup", None, None, "interface", sr.reason), sr)
            return False
        except Exception as exc:
            sr.reason = f"constructing the port raised {describe_exception(exc)}"
            self.fail(Failure(sc.name, "setup", None, None, "exception", sr.reason), sr)
            return False
        self.r.dtype = info.dtype
        self._state_dtype = info.state_dtype
        if info.dtype not in DTYPES:
            sr.reason = f"port declares unknown dtype {info.dtype!r}"
            self.fail(Failure(sc.name, "setup", None, None, "interface", sr.reason), sr)
            return False
        return True

    def _scenario(self, sc: Scenario, cfg: Config, sr: ScenarioResult) -> None:
        if not self._make_port(sc, cfg, sr):
            return
        try:
            if sc.layouts is not None and not self._extra(sc, sr, "lay_out", sc.layouts):
                return
            if sc.compiled and not self._extra(sc, sr, "compile_step"):
                return
            dtype, sdt = self.r.dtype, self._state_dtype
            rr = self.cache.get(sc, cfg, dtype, sdt if sdt in DTYPES else dtype, self.quick)
            sr.steps = rr.steps
            sr.closed_loop = rr.problem.closed_loop
            if rr.error:
                sr.status, sr.reason = "skip", rr.error
                return
            if rr.contract is not None and not self._contract(sc, rr, sr):
                return
            if sc.resume_after is not None:  # judged on the free run through a checkpoint
                sr.notes.append(_RESUMED.format(k=sc.resume_after))
            elif sc.compiled:
                sr.notes.append(_COMPILED)
            else:
                self._resync(sc, rr, sr)
            self._free(sc, rr, sr)
        finally:
            if self.lost is None:
                try:
                    self.session.release()
                except PortLost as exc:
                    self._lost(sc, "setup", None, "the release of the port", exc, sr)

    def _contract(self, sc: Scenario, rr: ReferenceRun, sr: ScenarioResult) -> bool:
        """Hand the port the scenario's contract (groups, lr schedule, absent gradients); False
        (the scenario skipped, with the reason) when it cannot take it."""
        assert rr.contract is not None
        why = None
        for k, (_arrays, cfg) in enumerate(rr.contract.groups):
            if why is None and (w := self._supports(sc, cfg, sr)):
                why = f"param group {k}: {w}"
        try:
            why = why or self.session.configure(rr.contract)
        except PortLost as exc:
            self._lost(sc, "setup", None, "the hand-over of the scenario's contract", exc, sr)
        if why:
            sr.status, sr.reason = "skip", why
            return False
        sr.notes.extend(rr.notes)
        sr.notes.append(_CONTRACT_NOTE)
        return True

    def _record(
        self,
        sc: Scenario,
        sr: ScenarioResult,
        mode: str,
        t: int,
        q: str,
        meas: Measure,
        judged: bool,
    ) -> bool:
        book = sr.resync if mode == "resync" else sr.free
        meas.worst.judged = judged
        old = book.get(q)
        if old is None or (meas.worst.fraction, meas.worst.ulps) > (old.fraction, old.ulps):
            book[q] = meas.worst
        if judged:
            sr.judged += 1
            sr.unresolved += meas.n_unresolved
        bad = meas.n_fail > 0 or meas.n_nonfinite > 0
        if bad and judged:
            w = meas.worst
            kind = "nonfinite" if meas.n_nonfinite else "tolerance"
            msg = (
                f"{q} off by {w.ulps:.3g} ulps = {w.fraction:.3g} x budget at step {t} "
                f"(array {w.array}, index {list(w.index or ())}: port {w.port_value:.17g}, "
                f"reference {w.ref_value:.17g}); {meas.n_fail} coordinates over budget"
            )
            if meas.n_nonfinite:
                msg = (
                    f"{q}: {meas.n_nonfinite} non-finite values where the reference is finite; "
                    + msg
                )
            self.fail(
                Failure(
                    sc.name,
                    mode,
                    t,
                    q,
                    kind,
                    msg,
                    w.array,
                    w.index,
                    w.port_value,
                    w.ref_value,
                    w.ulps,
                    w.fraction,
                ),
                sr,
            )
        return bad

    def _side_effects(
        self,
        sc: Scenario,
        mode: str,
        t: int,
        given: tuple[np.ndarray | None, ...],
        original: Sequence[np.ndarray | None],
        effects: list[str],
        sr: ScenarioResult,
    ) -> None:
        for i, (a, b) in enumerate(zip(given, original, strict=True)):
            if a is None or b is None:  # no gradient for this array at this step (a contract)
                continue
            if not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True):
                effects = [*effects, f"the gradient array {i} passed to step() was modified"]
                break
        for e in effects:
            self.fail(Failure(sc.name, mode, t, N.GRAD, "side_effect", f"step {t}: {e}"), sr)

    def _state_measures(
        self,
        sc: Scenario,
        sr: ScenarioResult,
        t: int,
        st: PortState,
        refs: dict[str, np.ndarray],
        bounds: Any,
        flat: Flat,
        mode: str,
    ) -> dict[str, Measure]:
        """m and v of the port's state against the reference, judged in the state dtype."""
        out: dict[str, Measure] = {}
        for q in STATE_QUANTITIES:
            arrs = getattr(st, q)
            if arrs is None or q not in refs:
                continue
            a64, err = validate_arrays(f"state().{q}", arrs, flat.shapes, None)
            if a64 is None:
                if self.judge_state and mode == "resync":
                    self.fail(Failure(sc.name, mode, t, q, "interface", f"step {t}: {err}"), sr)
                continue
            out[q] = compare_quantity(
                q, flat.cat(a64), refs[q], bounds[q], self._state_dtype, flat, t
            )
        return out

    def _resync(self, sc: Scenario, rr: ReferenceRun, sr: ScenarioResult) -> None:
        steps = ResyncSteps(self.session, None if rr.streamed else rr.resync, rr.flat.size, True)
        try:
            self._resync_steps(sc, rr, sr, steps)
        finally:
            self._drain(steps, sc, "resync", sr)

    def _drain(
        self, steps: FreeSteps | ResyncSteps, sc: Scenario, mode: str, sr: ScenarioResult
    ) -> None:
        try:
            steps.close()  # the steps sent past the one the loop stopped at
        except PortLost as exc:
            t = steps.draining
            what = "re-synced" if mode == "resync" else "free-running"
            self._lost(sc, mode, t, f"step {t} ({what})", exc, sr)

    def _resync_steps(
        self,
        sc: Scenario,
        rr: ReferenceRun,
        sr: ScenarioResult,
        steps: ResyncSteps,
    ) -> None:
        flat = rr.flat
        shapes = flat.shapes
        recent: list[Evidence] = []
        first: Evidence | None = None
        after = 0
        for rs in rr.resync_steps():
            t = rs.t
            try:
                grads, out = steps.outputs(rs)
            except NotImplementedError as exc:
                sr.reason = f"not judged re-synced: {_plain(exc)}; compared free-running only"
                if self.state_note is None:
                    self.state_note = (
                        f"the port's state cannot be re-synced ({_plain(exc)}): it is compared "
                        "and diagnosed from its free-running parameters only (black-box)"
                    )
                return
            except PortLost as exc:
                self._lost(sc, "resync", t, f"step {t} (re-synced)", exc, sr)
            except Exception as exc:
                msg = f"step {t} (re-synced) raised {describe_exception(exc)}"
                sr.reason = msg
                self.fail(Failure(sc.name, "resync", t, None, "exception", msg), sr)
                return
            self._side_effects(sc, "resync", t, grads, rs.grads, out.side_effects, sr)
            p64, err = validate_arrays("params()", out.params, shapes, self.r.dtype)
            if p64 is None:
                sr.reason = err or ""
                self.fail(
                    Failure(sc.name, "resync", t, N.PARAMS, "interface", f"step {t}: {err}"), sr
                )
                return
            measures: dict[str, Measure] = {
                N.PARAMS: compare_quantity(
                    N.PARAMS,
                    flat.cat(p64),
                    rs.ref.theta1,
                    rs.bounds[N.PARAMS],
                    self.r.dtype,
                    flat,
                    t,
                )
            }
            self.r.exposes_state = out.state is not None
            if out.state is not None:
                refs = {q: r for q in STATE_QUANTITIES if (r := stage_reference(rs, q)) is not None}
                measures.update(
                    self._state_measures(sc, sr, t, out.state, refs, rs.bounds, flat, "resync")
                )
            self.r.exposes_stages = out.stages is not None
            if out.stages is not None:
                self._stages(out.stages, rs, rr, measures, t)
            sdt = self._state_dtype if self._state_dtype in DTYPES else self.r.dtype
            # a contract step's floor is per group (rs.floor), so its update is tested too
            self.systematic.observe(sc.name, rr, rs, self.r.dtype, sdt, flat.cat(p64), out.stages)
            if out.state is not None and not self.judge_state and _UNJUDGED_STATE not in sr.notes:
                sr.notes.append(_UNJUDGED_STATE)
            if out.state is None and UNREAD_STATE not in sr.notes:
                sr.notes.append(UNREAD_STATE)  # never "m, v compared" unsaid
            bad_any = False
            for q, meas in measures.items():
                judged = q not in STATE_QUANTITIES or self.judge_state
                bad_any |= self._record(sc, sr, "resync", t, q, meas, judged)
            ev = Evidence(sc, rr, rs.for_diagnosis(), p64, out.state, out.stages, measures)
            if bad_any and first is None:
                ev.history = recent[-_HISTORY:]
                first = ev
                if rr.contract is None:  # the catalogue replays one group, constant lr, dense
                    self._keep(ev)
                else:  # ranked by conformance.contract_causes
                    self.contract_evidence.append(ev)
                after = _AFTER
            elif first is not None and after > 0:
                first.history.append(ev)
                after -= 1
            elif first is None:
                recent.append(ev)
                del recent[:-_HISTORY]
            if self._full():
                return

    def _keep(self, ev: Evidence) -> None:
        """Keep a failing scenario's evidence: the first as ``evidence``, a few more besides."""
        if self.evidence is None:
            self.evidence = ev
        elif len(self.other_evidence) < _OTHER_SCENARIOS:
            self.other_evidence.append(ev)

    def _stages(
        self,
        stg: dict[str, Any],
        rs: ResyncStep,
        rr: ReferenceRun,
        measures: dict[str, Measure],
        t: int,
    ) -> None:
        flat = rr.flat
        for q in N.RECORDABLE:
            if q not in stg or q == N.COS2:
                continue
            ref = stage_reference(rs, q)
            if ref is None:
                continue
            a64, _err = validate_arrays(f"stages()[{q!r}]", stg[q], flat.shapes, None)
            if a64 is None:
                continue
            measures[q] = compare_quantity(
                q, flat.cat(a64), ref, rs.bounds[q], self.r.dtype, flat, t
            )
        if N.COS2 in stg and rs.ref.cos2 is not None:
            try:
                per_array = np.array([float(np.asarray(c)) for c in stg[N.COS2]], dtype=np.float64)
            except (TypeError, ValueError):
                return
            if per_array.size != len(flat.shapes):
                return
            lid = np.asarray(flat.layer_of_array)
            ref_c = rs.ref.cos2[lid]
            bnd = rs.bounds[N.COS2][lid]
            s1 = flat.layer_sum(rs.ref.v)[lid]
            mask = s1 > 0  # all-zero and empty layers: c is a convention
            mask &= np.array([g is not None for g in rs.grads])  # skipped: out of its layer
            measures[N.COS2] = compare_quantity(
                N.COS2, per_array, ref_c, bnd, self.r.dtype, None, t, mask
            )

    def _free(self, sc: Scenario, rr: ReferenceRun, sr: ScenarioResult) -> None:
        judged = not rr.problem.closed_loop
        sr.free_judged = judged
        if not judged:
            sr.notes.append("free-running is a closed loop here: reported, not judged")
        try:
            self.session.reset(rr.params0, None)
        except PortLost as exc:
            self._lost(sc, "free", 0, "the reset before free-running", exc, sr)
        except Exception as exc:
            msg = f"reset() raised {describe_exception(exc)}"
            sr.reason = msg
            self.fail(Failure(sc.name, "free", 0, None, "exception", msg), sr)
            return
        current = rr.params0
        trajectory: list[np.ndarray] = []
        failed = [False]
        stops = frozenset() if sc.resume_after is None else frozenset({sc.resume_after})
        open_grads = None if rr.problem.closed_loop else rr.open_grads
        steps = FreeSteps(self.session, rr.steps, open_grads, rr.flat.size, stops)
        try:
            self._free_steps(sc, rr, sr, judged, current, trajectory, failed, steps)
        finally:
            if judged and failed[0] and trajectory and rr.contract is None:  # evidence to explain
                self.free_runs.append(free_run_of(rr, trajectory))
            elif judged and failed[0] and trajectory:
                self.contract_runs.append((rr, list(trajectory)))
            self._drain(steps, sc, "free", sr)

    def _extra(self, sc: Scenario, sr: ScenarioResult, name: str, *args: Any) -> bool:
        """Ask the port for the scenario's extra (``lay_out``, ``compile_step``); False (the
        scenario skipped with the reason) when it has none."""
        try:
            self.session.extra(name, *args)
        except NotImplementedError as exc:
            sr.status, sr.reason = "skip", f"{sc.name} not run: {_plain(exc)}"
            return False
        except PortLost as exc:
            self._lost(sc, "setup", None, f"the {name} request", exc, sr)
        if name == "lay_out":
            sr.notes.append("parameters laid out as " + ", ".join(args[0]))
        return True

    def _resume(self, sc: Scenario, t: int, sr: ScenarioResult) -> bool:
        """The port's checkpoint round trip after step ``t``; False (the scenario skipped or
        failed, with the reason) when it cannot go on."""
        try:
            self.session.extra("resume")
        except NotImplementedError as exc:
            if sr.status != "fail":  # a failure before the checkpoint stands
                sr.status = "skip"
            sr.reason = f"resume not run: {_plain(exc)}"
            return False
        except PortLost as exc:
            self._lost(sc, "free", t, f"the checkpoint round trip after step {t}", exc, sr)
        except Exception as exc:
            msg = f"the checkpoint round trip after step {t} raised {describe_exception(exc)}"
            sr.reason = msg
            self.fail(Failure(sc.name, "free", t, None, "exception", msg), sr)
            return False
        return True

    def _free_steps(
        self,
        sc: Scenario,
        rr: ReferenceRun,
        sr: ScenarioResult,
        judged: bool,
        current: Any,
        trajectory: list[np.ndarray],
        failed: list[bool],
        steps: FreeSteps,
    ) -> None:
        flat = rr.flat
        shapes = flat.shapes
        for ref in rr.free_steps():
            t = ref.t
            if rr.problem.closed_loop:
                try:
                    g = cast_arrays(rr.problem.gradient(t, current), self.r.dtype)
                except Exception as exc:  # the port's parameters broke the loss (NaN, ...)
                    msg = f"gradient at the port's parameters failed at step {t}: {describe_exception(exc)}"
                    self.fail(Failure(sc.name, "free", t, N.PARAMS, "nonfinite", msg), sr)
                    return
            else:
                g = ref.grads
            try:
                grads, out = steps.outputs(t, g)
            except PortLost as exc:
                self._lost(sc, "free", t, f"step {t} (free-running)", exc, sr)
            except Exception as exc:
                msg = f"step {t} (free-running) raised {describe_exception(exc)}"
                sr.reason = msg
                self.fail(Failure(sc.name, "free", t, None, "exception", msg), sr)
                return
            self._side_effects(sc, "free", t, grads, g, out.side_effects, sr)
            p64, err = validate_arrays("params()", out.params, shapes, self.r.dtype)
            if p64 is None:
                sr.reason = err or ""
                self.fail(
                    Failure(sc.name, "free", t, N.PARAMS, "interface", f"step {t}: {err}"), sr
                )
                return
            current = p64
            if len(trajectory) < _FREE_STEPS:
                trajectory.append(flat.cat(p64))
            b = ref.bounds
            mp = compare_quantity(
                N.PARAMS,
                flat.cat(p64),
                flat.cat(ref.params),
                b[N.PARAMS],
                self.r.dtype,
                flat,
                t,
                max_ulps=True,
            )
            sr.free_series.append(mp.worst.fraction)
            sr.free_ulps.append(mp.max_ulps)
            failed[0] |= self._record(sc, sr, "free", t, N.PARAMS, mp, judged)
            if t == sc.resume_after and not self._resume(sc, t, sr):
                return
            if out.state is not None and judged:
                refs = {
                    q: flat.cat(a)
                    for q in STATE_QUANTITIES
                    if (a := getattr(ref.state, q)) is not None
                }
                for q, meas in self._state_measures(
                    sc, sr, t, out.state, refs, b, flat, "free"
                ).items():
                    self._record(sc, sr, "free", t, q, meas, self.judge_state)
            if self._full():
                return
