"""Diagnosis of a failing port: where it first goes wrong, which stage, and the likely cause.

Order of questions, cheapest first:

1. Side effects (gradients mutated in place, parameters of other param groups touched) and
   NaN/Inf where the reference is finite: reported as such.
2. The first failing step (re-synced comparisons first: one-step errors cannot be blamed on
   accumulation), the worst coordinate there.
3. The first stage, in computation order (m, v, cos2 / down_scaling, epsilon_embedding,
   down_translating, update, params), whose values are over budget, when the port exposes its
   state and stage intermediates; otherwise the first observable that disagrees.
4. The catalogue of known deviations (``conformance.deviations``, when present) replayed on the
   reference from the same inputs, to name the most likely cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .results import Evidence, PortResult

ORDER: tuple[str, ...] = (
    "grad",
    "m",
    "v",
    "vmax",
    "cos2",
    "down_scaling",
    "epsilon_embedding",
    "down_translating",
    "denom",
    "update",
    "params",
)


def first_stage(measures: dict[str, Any]) -> str | None:
    """The first stage in computation order whose measure is over budget or non-finite."""
    for q in ORDER:
        m = measures.get(q)
        if m is not None and (m.n_fail > 0 or m.n_nonfinite > 0):
            return q
    return None


def diagnose(result: PortResult, evidence: Evidence | None) -> None:
    """Fill ``result.stage``, ``result.diagnosis`` and ``result.likely_causes`` in place."""
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
        result.likely_causes = _rank(result, evidence)
    elif side and not tol:
        result.stage = "grad" if any("gradient" in m for m in diag["side_effects"]) else "params"
    if not result.stage and tol:
        result.stage = tol[0].stage
    result.diagnosis = diag


def _rank(result: PortResult, ev: Evidence) -> list[tuple[str, float, str]]:
    try:
        from . import deviations
    except ImportError:
        return []
    rank_steps = getattr(deviations, "rank_causes_steps", None)
    step_evidence = getattr(deviations, "StepEvidence", None)
    rr = ev.reference
    steps = [*ev.history, ev]
    try:
        if rank_steps is not None and step_evidence is not None:
            items = []
            for e in steps:
                rs = e.resync
                st = e.port_state
                items.append(
                    step_evidence(
                        rs.params,
                        rs.grads,
                        rs.state,
                        e.port_params,
                        None if st is None else st.m,
                        None if st is None else st.v,
                    )
                )
            causes = rank_steps(items, rr.config, rr.layers, result.dtype)
        else:
            rs = ev.resync
            causes = deviations.rank_causes(
                rs.params, rs.grads, rs.state, rr.config, rr.layers, ev.port_params, result.dtype
            )
    except Exception as exc:  # a catalogue error must not lose the verdict
        result.diagnosis = {**(result.diagnosis or {}), "catalogue_error": repr(exc)}
        return []
    out: list[tuple[str, float, str]] = []
    for c in causes:
        if isinstance(c, tuple):
            name, score = str(c[0]), float(c[1])
            desc = str(c[2]) if len(c) > 2 else ""
        else:
            name = str(getattr(c, "name", c))
            score = float(getattr(c, "distance", getattr(c, "score", 0.0)))
            desc = str(getattr(c, "description", ""))
        out.append((name, score, desc))
    return out
