"""Drive ports through scenarios, compare against the reference, and reach a verdict.

The stable Python API (used by the CLI and by the meta-tests of deliberately wrong ports)::

    from conformance.runner import check_port
    result = check_port(factory, "setadam")            # factory(config) -> Port
    result.verdict        # "pass" | "fail" | "error" | "skip"
    result.failures       # list[Failure]: scenario, mode, step, stage, array, index, ulps, fraction
    result.stage          # the first stage that disagrees (diagnosis), or None
    result.likely_causes  # [(cause, score, description)], best first (conformance.deviations)

``check_port`` never raises for a misbehaving port: exceptions, wrong shapes or dtypes, hangs
(per-call timeout) and non-finite values become failures with a clear message.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from setadam_ref import AdamConfig, Config, SETAdamConfig
from setadam_ref import stage_names as N

from .compare import compare_quantity
from .formats import representable
from .guard import PortTimeout, Worker
from .interface import DTYPES, Port, PortState
from .reference_run import (
    DEFAULT_CACHE,
    ReferenceCache,
    ReferenceRun,
    ResyncStep,
    cast_arrays,
    stage_reference,
)
from .results import (
    DEFAULT_TIMEOUT_S,
    Evidence,
    Failure,
    Measure,
    PortFactory,
    PortResult,
    PortSpec,
    ScenarioResult,
    Supports,
)
from .scenarios import Scenario, select

STATE_QUANTITIES = (N.M, N.V)
STAGE_QUANTITIES = N.RECORDABLE


# ----------------------------------------------------------------------------- checking


class _Abort(Exception):
    """Stop driving this port (it hung)."""


def _port_outputs(
    port: Port, want_stages: bool
) -> tuple[
    tuple[np.ndarray, ...], PortState | None, dict[str, tuple[np.ndarray, ...]] | None, list[str]
]:
    params = port.params()
    st = port.state()
    stg = port.stages() if want_stages else None
    se = getattr(port, "side_effects", None)
    effects = list(se()) if callable(se) else []
    return params, st, stg, effects


def _validate_arrays(
    what: str, arrays: Any, shapes: Sequence[tuple[int, ...]], dtype: str | None
) -> tuple[tuple[np.ndarray, ...] | None, str | None]:
    """Arrays as float64 tuple, or an error message naming the first interface violation."""
    try:
        seq = list(arrays)
    except TypeError:
        return None, f"{what} returned {type(arrays).__name__}, not a sequence of arrays"
    if len(seq) != len(shapes):
        return None, f"{what} returned {len(seq)} arrays, expected {len(shapes)}"
    out = []
    for i, (a, s) in enumerate(zip(seq, shapes, strict=True)):
        arr = np.asarray(a)
        if arr.shape != tuple(s):
            return None, f"{what}[{i}] has shape {arr.shape}, expected {tuple(s)}"
        if not np.issubdtype(arr.dtype, np.floating):
            return None, f"{what}[{i}] has dtype {arr.dtype}, expected a float array"
        a64 = arr.astype(np.float64)
        if dtype is not None and dtype in DTYPES and not representable(a64, dtype):
            return None, f"{what}[{i}] holds values not representable in the port's dtype {dtype}"
        out.append(a64)
    return tuple(out), None


class _Checker:
    """Checks one port (factory) against a list of scenarios; fills a PortResult."""

    def __init__(
        self,
        factory: PortFactory,
        result: PortResult,
        base_config: Config | None,
        supports: Supports | None,
        quick: bool,
        timeout_s: float,
        judge_state: bool,
        cache: ReferenceCache,
        progress: Callable[[str], None] | None,
        max_failures: int,
    ) -> None:
        self.factory = factory
        self.r = result
        self.base = base_config
        self.supports = supports
        self.quick = quick
        self.timeout = timeout_s
        self.judge_state = judge_state
        self.cache = cache
        self.progress = progress
        self.max_failures = max_failures
        self.worker = Worker(f"port:{result.name}")
        self.evidence: Evidence | None = None
        self._seen: set[tuple[str, str, str, str]] = set()

    # -- bookkeeping
    def fail(self, f: Failure) -> None:
        key = (f.scenario, f.mode, f.stage or "", f.kind)
        if key in self._seen:
            return
        self._seen.add(key)
        if len(self.r.failures) < self.max_failures:
            self.r.failures.append(f)

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.worker.call(fn, self.timeout)

    # -- one scenario
    def scenario(self, sc: Scenario) -> ScenarioResult:
        t0 = time.perf_counter()
        alg = self.r.algorithm
        sr = ScenarioResult(sc.name, "pass")
        try:
            cfg = sc.config(alg, self.base)
        except (ValueError, TypeError) as exc:
            sr.status, sr.reason = "skip", f"config not expressible: {exc}"
            return sr
        if self.supports is not None:
            why = self.supports(cfg)
            if why:
                sr.status, sr.reason = "skip", why
                return sr
        if not sc.applies_to(alg, self.r.dtype if self.r.dtype in DTYPES else None):
            sr.status, sr.reason = "skip", f"scenario does not apply to {alg} in {self.r.dtype}"
            return sr
        try:
            self._scenario(sc, cfg, sr)
        except _Abort:
            pass
        sr.duration_s = time.perf_counter() - t0
        return sr

    def _make_port(self, sc: Scenario, cfg: Config, sr: ScenarioResult) -> Port | None:
        try:
            port = self.call(lambda: self.factory(cfg))
        except PortTimeout as exc:
            self._hung(sc, "setup", None, f"constructing the port: {exc}", sr)
        except Exception as exc:
            sr.status, sr.reason = "fail", f"constructing the port raised {_exc(exc)}"
            self.fail(Failure(sc.name, "setup", None, None, "exception", sr.reason))
            return None
        for attr in ("reset", "step", "params", "state", "stages"):
            if not callable(getattr(port, attr, None)):
                sr.status, sr.reason = "fail", f"the port has no method {attr}()"
                self.fail(Failure(sc.name, "setup", None, None, "interface", sr.reason))
                return None
        if getattr(port, "dtype", None) != self.r.dtype:
            self.r.dtype = str(getattr(port, "dtype", self.r.dtype))
        return port  # type: ignore[no-any-return]

    def _hung(self, sc: Scenario, mode: str, t: int | None, msg: str, sr: ScenarioResult) -> None:
        sr.status, sr.reason = "fail", f"port hung: {msg}"
        self.fail(Failure(sc.name, mode, t, None, "timeout", sr.reason))
        raise _Abort

    def _scenario(self, sc: Scenario, cfg: Config, sr: ScenarioResult) -> None:
        port = self._make_port(sc, cfg, sr)
        if port is None:
            return
        dtype = self.r.dtype
        if dtype not in DTYPES:
            sr.status, sr.reason = "fail", f"port declares unknown dtype {dtype!r}"
            self.fail(Failure(sc.name, "setup", None, None, "interface", sr.reason))
            return
        sdt = str(getattr(port, "state_dtype", dtype))
        rr = self.cache.get(sc, cfg, dtype, sdt if sdt in DTYPES else dtype, self.quick)
        sr.steps = rr.steps
        sr.closed_loop = rr.problem.closed_loop
        if rr.error:
            sr.status, sr.reason = "skip", rr.error
            return
        try:
            self._resync(sc, cfg, rr, port, sr)
            self._free(sc, cfg, rr, port, sr)
        finally:
            close = getattr(port, "close", None)
            if callable(close) and not self.worker.hung:
                try:
                    self.call(close)
                except Exception:
                    pass
        if any(f.scenario == sc.name for f in self.r.failures) and sr.status == "pass":
            sr.status = "fail"

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
        if q not in book or (meas.worst.fraction, meas.worst.ulps) > (book[q].fraction, book[q].ulps):
            book[q] = meas.worst
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
                )
            )
            sr.status = "fail"
        return bad

    def _resync(
        self, sc: Scenario, cfg: Config, rr: ReferenceRun, port: Port, sr: ScenarioResult
    ) -> None:
        flat = rr.flat
        shapes = flat.shapes
        recent: list[Evidence] = []
        after = 0
        for t in sorted(rr.resync):
            rs = rr.resync[t]
            grads = tuple(np.array(g, copy=True) for g in rs.grads)

            def job(rs: ResyncStep = rs, grads: tuple[np.ndarray, ...] = grads) -> Any:
                port.reset(rs.params, rs.state)
                port.step(grads)
                return _port_outputs(port, True)

            try:
                params, st, stg, effects = self.call(job)
            except NotImplementedError:
                sr.reason = "port cannot continue from a given state: compared free-running only"
                return
            except PortTimeout as exc:
                self._hung(sc, "resync", t, f"step {t}: {exc}", sr)
            except Exception as exc:
                msg = f"step {t} (re-synced) raised {_exc(exc)}"
                self.fail(Failure(sc.name, "resync", t, None, "exception", msg))
                sr.status, sr.reason = "fail", msg
                return
            if not self._side_effects(sc, "resync", t, grads, rs.grads, effects, sr):
                pass
            p64, err = _validate_arrays("params()", params, shapes, self.r.dtype)
            if err or p64 is None:
                self.fail(Failure(sc.name, "resync", t, "params", "interface", f"step {t}: {err}"))
                sr.status, sr.reason = "fail", err or ""
                return
            measures: dict[str, Measure] = {}
            measures["params"] = compare_quantity(
                "params", flat.cat(p64), rs.ref.theta1, rs.bounds["params"], self.r.dtype, flat, t
            )
            self.r.exposes_state = st is not None
            if st is not None:
                for q in STATE_QUANTITIES:
                    arrs = getattr(st, q)
                    if arrs is None:
                        continue
                    sdt = str(getattr(port, "state_dtype", self.r.dtype))
                    a64, err = _validate_arrays(f"state().{q}", arrs, shapes, None)
                    if a64 is None:
                        if self.judge_state:
                            self.fail(
                                Failure(sc.name, "resync", t, q, "interface", f"step {t}: {err}")
                            )
                            sr.status = "fail"
                        continue
                    ref = stage_reference(rs, q)
                    assert ref is not None
                    measures[q] = compare_quantity(
                        q, flat.cat(a64), ref, rs.bounds[q], sdt, flat, t
                    )
            self.r.exposes_stages = stg is not None
            if stg is not None:
                self._stages(stg, rs, rr, measures, t)
            bad_any = False
            for q, meas in measures.items():
                judged = (
                    q == "params"
                    or (self.judge_state and q in STATE_QUANTITIES)
                    or q in STAGE_QUANTITIES
                )
                bad_any |= self._record(sc, sr, "resync", t, q, meas, judged)
            ev = Evidence(sc, rr, rs, p64, st, stg, measures)
            if bad_any and self.evidence is None:
                ev.history = recent[-3:]
                self.evidence = ev
                after = 2
            elif self.evidence is not None and self.evidence.scenario is sc and after > 0:
                self.evidence.history.append(ev)  # later steps help tell step-onset bugs apart
                after -= 1
            elif self.evidence is None:
                recent.append(ev)
                del recent[:-3]
            if len(self.r.failures) >= self.max_failures:
                return

    def _stages(
        self,
        stg: dict[str, tuple[np.ndarray, ...]],
        rs: ResyncStep,
        rr: ReferenceRun,
        measures: dict[str, Measure],
        t: int,
    ) -> None:
        flat = rr.flat
        for q in STAGE_QUANTITIES:
            if q not in stg or q == "cos2":
                continue
            ref = stage_reference(rs, q)
            if ref is None:
                continue
            a64, _err = _validate_arrays(f"stages()[{q!r}]", stg[q], flat.shapes, None)
            if a64 is None:
                continue
            measures[q] = compare_quantity(
                q, flat.cat(a64), ref, rs.bounds[q], self.r.dtype, flat, t
            )
        if "cos2" in stg and rs.ref.cos2 is not None:
            try:
                per_array = np.array([float(np.asarray(c)) for c in stg["cos2"]], dtype=np.float64)
            except (TypeError, ValueError):
                return
            if per_array.size != len(flat.shapes):
                return
            lid = np.asarray(flat.layer_of_array)
            ref_c = rs.ref.cos2[lid]
            bnd = rs.bounds["cos2"][lid]
            s1 = flat.layer_sum(rs.ref.v)[lid]
            mask = s1 > 0  # all-zero and empty layers: c is a convention
            measures["cos2"] = compare_quantity(
                "cos2", per_array, ref_c, bnd, self.r.dtype, None, t, mask
            )

    def _side_effects(
        self,
        sc: Scenario,
        mode: str,
        t: int,
        given: tuple[np.ndarray, ...],
        original: Sequence[np.ndarray],
        effects: list[str],
        sr: ScenarioResult,
    ) -> bool:
        ok = True
        for i, (a, b) in enumerate(zip(given, original, strict=True)):
            if not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True):
                effects = [*effects, f"the gradient array {i} passed to step() was modified"]
                break
        for e in effects:
            ok = False
            self.fail(Failure(sc.name, mode, t, "grad", "side_effect", f"step {t}: {e}"))
            sr.status = "fail"
        return ok

    def _free(
        self, sc: Scenario, cfg: Config, rr: ReferenceRun, port: Port, sr: ScenarioResult
    ) -> None:
        flat = rr.flat
        shapes = flat.shapes
        judged = not rr.problem.closed_loop
        sr.free_judged = judged
        try:
            self.call(lambda: port.reset(rr.params[0], None))
        except PortTimeout as exc:
            self._hung(sc, "free", 0, f"reset: {exc}", sr)
        except Exception as exc:
            msg = f"reset() raised {_exc(exc)}"
            self.fail(Failure(sc.name, "free", 0, None, "exception", msg))
            sr.status, sr.reason = "fail", msg
            return
        current = rr.params[0]
        for t in range(1, rr.steps + 1):
            if rr.problem.closed_loop:
                try:
                    g = cast_arrays(rr.problem.gradient(t, current), self.r.dtype)
                except Exception as exc:  # the port's parameters broke the loss (NaN, ...)
                    msg = f"gradient at the port's parameters failed at step {t}: {_exc(exc)}"
                    self.fail(Failure(sc.name, "free", t, "params", "nonfinite", msg))
                    sr.status = "fail"
                    return
            else:
                g = rr.grads[t - 1]
            grads = tuple(np.array(a, copy=True) for a in g)

            def job(grads: tuple[np.ndarray, ...] = grads) -> Any:
                port.step(grads)
                return _port_outputs(port, False)

            try:
                params, st, _stg, effects = self.call(job)
            except PortTimeout as exc:
                self._hung(sc, "free", t, f"step {t}: {exc}", sr)
            except Exception as exc:
                msg = f"step {t} (free-running) raised {_exc(exc)}"
                self.fail(Failure(sc.name, "free", t, None, "exception", msg))
                sr.status, sr.reason = "fail", msg
                return
            self._side_effects(sc, "free", t, grads, g, effects, sr)
            p64, err = _validate_arrays("params()", params, shapes, self.r.dtype)
            if p64 is None:
                self.fail(Failure(sc.name, "free", t, "params", "interface", f"step {t}: {err}"))
                sr.status, sr.reason = "fail", err or ""
                return
            current = p64
            b = rr.free_bounds[t - 1]
            mp = compare_quantity(
                "params", flat.cat(p64), flat.cat(rr.params[t]), b["params"], self.r.dtype, flat, t,
                max_ulps=True,
            )  # fmt: skip
            sr.free_series.append(mp.worst.fraction)
            sr.free_ulps.append(mp.max_ulps)
            # closed loop: the gradient's feedback on errors is not bounded: report only
            self._record(sc, sr, "free", t, "params", mp, judged)
            if st is not None and judged:
                for q in STATE_QUANTITIES:
                    arrs = getattr(st, q)
                    if arrs is None:
                        continue
                    sdt = str(getattr(port, "state_dtype", self.r.dtype))
                    a64, _ = _validate_arrays(f"state().{q}", arrs, shapes, None)
                    if a64 is None:
                        continue
                    refq = flat.cat(getattr(rr.states[t], q))
                    meas = compare_quantity(q, flat.cat(a64), refq, b[q], sdt, flat, t)
                    self._record(sc, sr, "free", t, q, meas, self.judge_state)
            if len(self.r.failures) >= self.max_failures:
                return

    def close(self) -> None:
        self.worker.close()


def _exc(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}{where}"


def _as_scenarios(scenarios: Sequence[str | Scenario] | None, quick: bool) -> list[Scenario]:
    if scenarios is None:
        return select(None, quick)
    out: list[Scenario] = []
    names = [s for s in scenarios if isinstance(s, str)]
    if names:
        out.extend(select(names))
    out.extend(s for s in scenarios if isinstance(s, Scenario))
    return out


def check_port(
    port_factory: PortFactory | PortSpec,
    algorithm: str | None = None,
    config: Config | None = None,
    scenarios: Sequence[str | Scenario] | None = None,
    *,
    name: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    supports: Supports | None = None,
    quick: bool = False,
    timeout_s: float | None = None,
    judge_state: bool | None = None,
    diagnose: bool = True,
    cache: ReferenceCache | None = None,
    progress: Callable[[str], None] | None = None,
    max_failures: int = 50,
) -> PortResult:
    """Check one port against the reference on ``scenarios`` (default: all, or the quick subset).

    ``port_factory(config) -> Port`` builds a fresh port for a scenario's reference config
    (``config`` is the base the scenarios' hyperparameters are applied to). ``supports(config)``
    returns None when the port can express the config, else the reason (the scenario is skipped).
    A ``PortSpec`` carries all of these. Never raises for a misbehaving port.
    """
    if isinstance(port_factory, PortSpec):
        spec = port_factory
        factory: PortFactory = spec.factory
        algorithm = algorithm or spec.algorithm
        config = config if config is not None else spec.base_config
        supports = supports or spec.supports
        name = name or spec.name
        dtype = dtype or spec.dtype
        device = device or spec.device
        timeout_s = timeout_s if timeout_s is not None else spec.timeout_s
        judge_state = judge_state if judge_state is not None else spec.judge_state
        if scenarios is None and spec.quick_subset and not quick:
            scenarios = [s for s in select(None, True)]
        if scenarios is None and spec.scenarios is not None:
            scenarios = list(spec.scenarios)
    else:
        factory = port_factory
    if algorithm is None:
        algorithm = "setadam" if isinstance(config, SETAdamConfig) else "adam"
    if algorithm not in ("adam", "setadam"):
        raise ValueError(f"algorithm must be 'adam' or 'setadam', got {algorithm!r}")
    if config is not None and isinstance(config, AdamConfig) != (algorithm == "adam"):
        raise ValueError(f"config {type(config).__name__} does not match algorithm {algorithm!r}")
    result = PortResult(
        name or str(getattr(factory, "__name__", "port")),
        algorithm,
        dtype or "float64",
        device or "cpu",
    )
    t0 = time.perf_counter()
    checker = _Checker(
        factory,
        result,
        config,
        supports,
        quick,
        timeout_s if timeout_s is not None else DEFAULT_TIMEOUT_S,
        True if judge_state is None else judge_state,
        cache or DEFAULT_CACHE,
        progress,
        max_failures,
    )
    try:
        for sc in _as_scenarios(scenarios, quick):
            if progress is not None:
                progress(sc.name)
            result.scenarios.append(checker.scenario(sc))
            if checker.worker.hung:
                break
    finally:
        checker.close()
    ran = [s for s in result.scenarios if s.status != "skip"]
    if result.failures:
        result.verdict = "fail"
    elif not ran:
        result.verdict = "skip"
        reasons = sorted({s.reason for s in result.scenarios})
        result.message = "no scenario applies: " + "; ".join(reasons)[:300]
    else:
        result.verdict = "pass"
    if diagnose and result.failures:
        from .diagnose import diagnose as _diagnose

        try:
            _diagnose(result, checker.evidence)
        except Exception as exc:  # the diagnosis must never lose a verdict
            result.diagnosis = {"error": f"diagnosis failed: {_exc(exc)}"}
    if not result.message:
        result.message = _summary_message(result)
    result.duration_s = time.perf_counter() - t0
    return result


def _summary_message(r: PortResult) -> str:
    if r.verdict == "pass":
        n = sum(1 for s in r.scenarios if s.status == "pass")
        return f"{n} scenarios within budget (worst {r.worst_fraction():.3g} x budget)"
    if r.verdict == "fail" and r.failures:
        f = r.failures[0]
        where = f"{f.scenario}, {f.mode} step {f.step}" if f.step is not None else f.scenario
        stage = f", first disagreeing stage: {r.stage}" if r.stage else ""
        cause = f", likely cause: {r.likely_causes[0][0]}" if r.likely_causes else ""
        return f"{f.kind} at {where}{stage}{cause}: {f.message}"[:400]
    return r.message


def error_result(name: str, algorithm: str, dtype: str, device: str, message: str) -> PortResult:
    """A PortResult for a port that could not even be set up (import/environment error)."""
    return PortResult(name, algorithm, dtype, device, verdict="error", message=message)
