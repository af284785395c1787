"""Check one port: scenarios -> reference runs -> port run -> comparison -> diagnosis -> verdict.

The stable Python API (used by the CLI and by the meta-tests of deliberately wrong ports)::

    from conformance.runner import check_port
    result = check_port(factory, "setadam")            # factory(config) -> Port
    result.verdict        # "pass" | "fail" | "error" | "skip" | "not_judged"
    result.failures       # list[Failure]: scenario, mode, step, stage, array, index, ulps, fraction
    result.stage          # the first stage that disagrees (diagnosis), or None
    result.likely_causes  # [(cause, score, description)], best first (conformance.catalogue)

``check_port`` never raises for a misbehaving port: exceptions, wrong shapes or dtypes, hangs
(per-call timeout) and non-finite values become failures with a clear message. A factory runs
in this process (:class:`~conformance.session.ThreadSession`); ``isolate=True``, or a spec with
a locator and no factory, runs the port in a worker process of its own
(:class:`~conformance.process_session.ProcessSession`), which also survives a port that kills
its interpreter. The verdict: ``fail`` when a scenario failed; else ``error`` when one could not
be set up (import, calling convention, device: exit 2); else ``pass`` when at least one
scenario was judged; else ``not_judged`` or ``skip``, with the reasons. The pipeline's
stages live in their own modules: :mod:`conformance.scenarios`, :mod:`conformance.reference_run`,
:mod:`conformance.drive` (the port run and its comparisons), :mod:`conformance.diagnose`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from setadam_ref import AdamConfig, Config, SETAdamConfig

from .drive import ScenarioDriver
from .reference_run import DEFAULT_CACHE, ReferenceCache
from .results import DEFAULT_TIMEOUT_S, PortFactory, PortResult, PortSpec, Supports
from .scenarios import Scenario, select
from .session import PortSession, ThreadSession, describe_exception


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
    isolate: bool = False,
    session: PortSession | None = None,
    deadline_s: float | None = None,
    max_memory: int | None = None,
    systematic_alpha: float | None = None,
) -> PortResult:
    """Check one port against the reference on ``scenarios`` (default: all, or the quick subset).

    ``port_factory(config) -> Port`` builds a fresh port for a scenario's reference config
    (``config`` is the base the scenarios' hyperparameters are applied to). ``supports(config)``
    returns None when the port can express the config, else the reason (the scenario is skipped).
    A ``PortSpec`` carries all of these. Never raises for a misbehaving port.

    ``isolate``: run the port in a worker process (the spec needs a ``locator``); ``session``:
    a session to drive instead (the caller closes nothing: ``check_port`` closes it);
    ``deadline_s``: wall-clock limit of the whole check (worker processes only);
    ``max_memory``: address-space limit of the worker in bytes; ``systematic_alpha``: the
    statistical verdict's false-alarm bound for this check (default ``systematic.ALPHA``).
    """
    spec: PortSpec | None = None
    factory: PortFactory | None
    local_supports = supports  # what the port supports: asked where the port is built
    if isinstance(port_factory, PortSpec):
        spec = port_factory
        factory = spec.factory
        algorithm = algorithm or spec.algorithm
        config = config if config is not None else spec.base_config
        local_supports = supports or spec.supports
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
    timeout = timeout_s if timeout_s is not None else DEFAULT_TIMEOUT_S
    if session is None:
        if isolate or factory is None:
            from .process_session import ProcessSession

            if spec is None or spec.locator is None:
                raise ValueError("isolate=True needs a PortSpec with a locator")
            session = ProcessSession(
                spec.locator, timeout, deadline_s=deadline_s, max_memory=max_memory
            )
        else:
            session = ThreadSession(factory, result.dtype, timeout, result.name, local_supports)
    driver = ScenarioDriver(
        session,
        result,
        config,
        supports,
        quick,
        True if judge_state is None else judge_state,
        cache or DEFAULT_CACHE,
        max_failures,
    )
    try:
        for sc in _as_scenarios(scenarios, quick):
            if driver.lost is not None:
                result.scenarios.append(driver.not_run(sc))
                continue
            if progress is not None:
                progress(sc.name)
            result.scenarios.append(driver.run(sc))
    finally:
        session.close()
        result.output = session.output()
    _judge_systematic(result, driver, systematic_alpha)
    _decide(result)
    result.state_note = driver.state_note or ""
    if diagnose and any(f.kind != "systematic" for f in result.failures):
        from .diagnose import diagnose as _diagnose

        try:
            _diagnose(
                result,
                driver.evidence,
                others=driver.other_evidence,
                free_runs=driver.free_runs,
                state_note=driver.state_note,
            )
            from .contract_causes import diagnose_contract

            diagnose_contract(result, driver.contract_evidence, driver.contract_runs)
        except Exception as exc:  # the diagnosis must never lose a verdict
            result.diagnosis = {"error": f"diagnosis failed: {describe_exception(exc)}"}
    if not result.message:
        result.message = _summary_message(result)
    result.duration_s = time.perf_counter() - t0
    return result


def _judge_systematic(r: PortResult, driver: ScenarioDriver, alpha: float | None) -> None:
    """The statistical verdict (:mod:`conformance.systematic`): its record, and a failure of
    the scenario for every systematic deviation found (``alpha``: the check's false-alarm
    bound, default ``systematic.ALPHA``; fuzz splits its own over the session's cases)."""
    verdict = driver.systematic.judge() if alpha is None else driver.systematic.judge(alpha)
    r.systematic = verdict.to_dict()
    failing = {t.scenario for t in verdict.rejected}
    for s in r.scenarios:
        if s.scenario in failing and s.status == "pass":
            s.status = "fail"
    r.failures.extend(verdict.failures())


def _reasons(r: PortResult, status: str) -> str:
    return "; ".join(sorted({s.reason for s in r.scenarios if s.status == status}))[:300]


def _decide(r: PortResult) -> None:
    """The port's verdict from its scenarios (module docstring); the message for error,
    not judged and skip."""
    statuses = {s.status for s in r.scenarios}
    if "fail" in statuses or r.failures:
        r.verdict = "fail"
    elif "error" in statuses:
        r.verdict = "error"
        r.message = _reasons(r, "error")
    elif "pass" in statuses:
        r.verdict = "pass"
    elif "not_judged" in statuses:
        r.verdict = "not_judged"
        r.message = "nothing judged: " + _reasons(r, "not_judged")
    else:
        r.verdict = "skip"
        r.message = "no scenario applies: " + (_reasons(r, "skip") or "no scenario selected")


def _summary_message(r: PortResult) -> str:
    if r.verdict == "pass":
        n = r.count("pass")
        text = f"{n} scenarios within budget (worst {r.worst_fraction() or 0.0:.3g} x budget)"
        extra = [f"{r.count(st)} {st.replace('_', ' ')}" for st in ("not_judged", "skip") if r.count(st)]
        return text + (f"; {', '.join(extra)} (reasons in the report)" if extra else "")
    if r.verdict == "fail" and r.failures:
        f = r.failures[0]
        where = f"{f.scenario}, {f.mode} step {f.step}" if f.step is not None else f.scenario
        stage = f", first disagreeing stage: {r.stage}" if r.stage else ""
        phrase = cause_phrase(r)
        cause = f", {phrase}" if phrase else ""
        return f"{f.kind} at {where}{stage}{cause}: {f.message}"[:400]
    return r.message


def cause_phrase(r: PortResult) -> str:
    """The diagnosis's cause in a few words: the best entry, a tie as a tie (no entry of a tie is
    singled out), or the statement that no known deviation explains the port."""
    d = r.diagnosis or {}
    tied = d.get("tied") or []
    if len(tied) > 1:
        return "likely causes (tied): " + ", ".join(tied)
    if r.likely_causes:
        return f"likely cause: {r.likely_causes[0][0]}"
    if d.get("no_known_deviation"):
        return "no known deviation explains this"
    return ""


def error_result(name: str, algorithm: str, dtype: str, device: str, message: str) -> PortResult:
    """A PortResult for a port that could not even be set up (import/environment error)."""
    return PortResult(name, algorithm, dtype, device, verdict="error", message=message)
