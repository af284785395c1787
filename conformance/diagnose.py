"""Diagnosis of a failing port: where it first goes wrong, which stage, and the likely cause.

Order of questions, cheapest first:

1. Side effects (gradients mutated in place, parameters of other param groups touched) and
   NaN/Inf where the reference is finite: reported as such.
2. The first failing step (re-synced comparisons first: one-step errors cannot be blamed on
   accumulation), the worst coordinate there.
3. The first stage, in computation order (``setadam_ref.stage_names.COMPUTATION_ORDER``: m, v,
   cos2 / down_scaling, epsilon_embedding, down_translating, update, params), whose values are
   over budget, when the port exposes its state and stage intermediates; otherwise the first
   observable that disagrees.
4. The catalogue of known deviations (:mod:`conformance.catalogue`) replayed through the
   reference from the same inputs and ranked in the budgets of the tolerance model that the
   reference run carries: on the re-synced steps of every failing scenario (their ``bounds``)
   and on the free-running trajectories of every failing open-loop scenario (``free_bounds``),
   combined by ``catalogue.explain``. A port whose state cannot be read or written is
   diagnosed from the free-running trajectories alone (black-box). When the port exposes no
   intermediate, the stage is the best-explaining entry's (said so in ``stage_basis``); when
   nothing explains it, the report says so with the first step and scenario where it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from setadam_ref import stage_names as N

from .catalogue import Explanation, FreeRun, StepEvidence, explain
from .results import Evidence, PortResult

ORDER: tuple[str, ...] = N.COMPUTATION_ORDER


def first_stage(measures: dict[str, Any]) -> str | None:
    """The first stage in computation order whose measure is over budget or non-finite."""
    for q in ORDER:
        m = measures.get(q)
        if m is not None and (m.n_fail > 0 or m.n_nonfinite > 0):
            return q
    return None


def diagnose(
    result: PortResult,
    evidence: Evidence | None,
    *,
    others: Sequence[Evidence] = (),
    free_runs: Sequence[FreeRun] = (),
    state_note: str | None = None,
) -> None:
    """Fill ``result.stage``, ``result.diagnosis`` and ``result.likely_causes`` in place.

    ``evidence``: the first failing re-synced step (with its history); ``others``: that of the
    other failing scenarios; ``free_runs``: the free-running trajectories of the failing
    open-loop scenarios; ``state_note``: where the port's state was found, or why it could not
    be read or written (reported once).
    """
    fails = result.failures
    diag: dict[str, Any] = {}
    side = [f for f in fails if f.kind == "side_effect"]
    if side:
        diag["side_effects"] = sorted({f.message.split(": ", 1)[-1] for f in side})
    nonfinite = [f for f in fails if f.kind == "nonfinite"]
    if nonfinite:
        f = nonfinite[0]
        diag["nonfinite"] = f"{f.scenario} ({f.mode}) step {f.step}: {f.message}"
    errors = [f for f in fails if f.kind in ("exception", "timeout", "interface")]
    if errors:
        diag["errors"] = [f"{f.scenario}: {f.message}" for f in errors[:5]]
    tol = [f for f in fails if f.kind in ("tolerance", "nonfinite") and f.step is not None]
    if tol:
        resync = [f for f in tol if f.mode == "resync"]
        first = min(resync or tol, key=lambda f: (f.mode != "resync", f.step or 0))
        diag["first_failure"] = {
            "scenario": first.scenario,
            "mode": first.mode,
            "step": first.step,
            "quantity": first.stage,
            "array": first.array,
            "index": list(first.index) if first.index is not None else None,
            "ulps": first.ulps,
            "budget_fraction": first.budget_fraction,
        }
    if state_note:
        diag["state"] = state_note
    if evidence is not None:
        stage = first_stage(evidence.measures)
        result.stage = stage
        exposes = []
        if evidence.port_state is not None:
            exposes.append("m/v state")
        if evidence.port_stages is not None:
            exposes.append("stage intermediates")
        diag["stage"] = stage
        diag["stage_basis"] = (
            "compared " + " and ".join(exposes)
            if exposes
            else "port exposes neither state nor stages: only its parameters can be compared"
        )
        diag["stage_step"] = evidence.resync.t
        diag["stage_scenario"] = evidence.scenario.name
        diag["measures"] = {
            q: {"fraction": m.worst.fraction, "ulps": m.worst.ulps, "n_fail": m.n_fail}
            for q, m in evidence.measures.items()
        }
    elif side and not tol:
        result.stage = "grad" if any("gradient" in m for m in diag["side_effects"]) else "params"
    if not result.stage and tol:
        result.stage = tol[0].stage
    result.diagnosis = diag
    if tol and (evidence is not None or free_runs):
        ex = _explain(result, [e for e in (evidence, *others) if e is not None], free_runs)
        if ex is not None:
            _report(result, diag, ex)


def _steps(ev: Evidence) -> list[StepEvidence]:
    """The re-synced steps of one failing scenario as the ranking's evidence, with its config."""
    rr = ev.reference
    out = []
    for e in [*ev.history, ev]:
        rs, st = e.resync, e.port_state
        out.append(
            StepEvidence(
                rs.params,
                rs.grads,
                rs.state,
                e.port_params,
                None if st is None else st.m,
                None if st is None else st.v,
                {k: rs.bounds[k] for k in (N.PARAMS, N.M, N.V) if k in rs.bounds},
                ev.scenario.name,
                rr.config,
                rr.layers,
            )
        )
    return out


def _explain(
    result: PortResult, evidence: Sequence[Evidence], runs: Sequence[FreeRun]
) -> Explanation | None:
    """The catalogue ranked on all the evidence, in the budgets of the reference runs."""
    steps = [s for ev in evidence for s in _steps(ev)]
    config = evidence[0].reference.config if evidence else runs[0].config
    layers = evidence[0].reference.layers if evidence else runs[0].layers
    try:
        return explain(steps, runs, config, layers, result.dtype)
    except Exception as exc:  # a catalogue error must not lose the verdict
        result.diagnosis = {**(result.diagnosis or {}), "catalogue_error": repr(exc)}
        return None


def _report(result: PortResult, diag: dict[str, Any], ex: Explanation) -> None:
    """The explanation into the result: causes, their basis, ties, the inferred stage, or the
    plain statement that nothing known explains the port."""
    result.likely_causes = [(c.name, c.distance, c.description) for c in ex.causes]
    if ex.causes:
        diag["cause_basis"] = ex.basis
        if len(ex.best) > 1:
            diag["tied"] = [c.name for c in ex.best]
        stages = {c.stage for c in ex.best}
        if result.stage in (None, N.PARAMS) and len(stages) == 1:
            result.stage = stages.pop()
            diag["stage"] = result.stage
            diag["stage_basis"] = (
                "inferred from the best-explaining catalogue entry "
                f"({ex.best[0].name}): the port exposes no quantity closer to it than its parameters"
            )
    else:
        first = diag.get("first_failure") or {}
        diag["no_known_deviation"] = (
            "no known deviation explains this; it shows first at "
            f"{first.get('scenario')} ({first.get('mode')}) step {first.get('step')}"
        )
    if ex.notes:
        diag["cause_notes"] = ex.notes
