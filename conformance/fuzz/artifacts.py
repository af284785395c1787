"""What a fuzz session leaves in its report directory, and the few terminal lines of a failure.

``fuzz.json`` (options, capabilities, counts, rate, verdict; for a failure the shrunk case, its
failures and its diagnosis), and for a failure ``case.json``, ``reproducer.py``
(:mod:`conformance.fuzz.reproducer`) and ``vector/`` (the shrunk case as a golden vector:
``manifest.json`` and its text twin, written by :mod:`conformance.vectors.export`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from setadam_ref import stage_names as N

from ..contract import contract_of
from ..reference_run import build_reference_for
from ..results import Failure, PortSpec
from ..runner import cause_phrase
from ..vectors.catalogue import VectorSpec
from ..vectors.contract_vectors import NotExpressible
from ..vectors.export import export
from . import reproducer
from .cases import Case, base_of
from .engine import FuzzOptions, FuzzResult, options_json

VECTOR_ID = "{algorithm}-9001"  # the 9000s: vectors of shrunk fuzz cases
#: a contract case the golden vector format (version 2: groups, lr factors, absent gradients)
#: still cannot express: groups that mix amsgrad and no amsgrad, a layer whose arrays with a
#: gradient have different step counts (the reference's own ValueError is the reason)
VECTOR_CANNOT = "not written: the golden vector format cannot express this contract case: {reason}"


def _config(case: Case, spec: PortSpec) -> Any:
    return case.config(spec.base_config or base_of(case.algorithm))


def _fields(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def judged_failure(failures: list[Failure]) -> Failure | None:
    """The failure a reproducer shows: the first free-running one with a coordinate, else the
    first re-synced one."""
    located = [f for f in failures if f.array is not None and f.step is not None]
    for mode in ("free", "resync"):
        hits = [f for f in located if f.mode == mode and f.stage == N.PARAMS]
        if hits:
            return min(hits, key=lambda f: f.step or 0)
    return located[0] if located else None


def write_vector(case: Case, spec: PortSpec, directory: Path) -> Path:
    """The shrunk case as a golden vector set of one (the project's format, with its text twin);
    a contract case as a version-2 vector: its groups with the harness's configs
    (:func:`conformance.contract.contract_of`), the schedule's factors and the presence mask."""
    params0, grads = case.inputs()
    n = len(case.shapes)
    cfg = _config(case, spec)
    contract = contract_of(case.problem(), cfg) if case.contract else None
    extra: dict[str, Any] = {}
    flags = ["basic"]
    if contract is not None:
        active = case.active()
        extra = {
            "groups": tuple((tuple(a), _fields(c)) for a, c in contract.groups),
            "lr_factors": contract.lr_factors, "active": active,
        }  # fmt: skip
        flags = [f for f, on in (("param-groups", len(contract.groups) > 1),
                                 ("lr-schedule", contract.lr_factors is not None),
                                 ("absent-gradients", active is not None)) if on]  # fmt: skip
    vs = VectorSpec(
        VECTOR_ID.format(algorithm=case.algorithm), case.algorithm,
        {} if contract is not None else _fields(cfg),
        tuple(case.shapes), tuple((i,) for i in range(n)), tuple(params0), tuple(grads),
        tuple(flags), f"shrunk fuzz case of {spec.name}: {case.describe()}", **extra,
    )  # fmt: skip
    try:
        export(directory, [vs])
    except NotExpressible as exc:
        raise ValueError(VECTOR_CANNOT.format(reason=exc)) from None
    return directory / "manifest.json"


def constructed(case: Case, spec: PortSpec, cfg: Any, contract: Any) -> dict[str, Any]:
    """The keyword arguments the target is built with for ``case``, as the worker reports them
    (``construction`` of the framework adapter, after ``make`` and ``configure`` as the case's
    run does): ``kwargs`` and ``groups`` (per param group its arrays and options, None where
    the adapter builds no torch param groups). The harness process imports no target, so only
    the worker knows the fields its adapter adds from the target's signature (``amsgrad``, ...).
    Raises RuntimeError when the port reports none."""
    from ..process_session import ProcessSession

    assert spec.locator is not None
    ses = ProcessSession(spec.locator, spec.timeout_s)
    try:
        ses.make(cfg)
        if case.contract and contract is not None:
            ses.configure(contract)
        out = ses.construction(len(case.shapes))
    finally:
        ses.close()
    if not isinstance(out, dict) or not isinstance(out.get("kwargs"), dict):
        raise RuntimeError("the port does not report the keyword arguments it was built with")
    return out


def write_reproducer(case: Case, spec: PortSpec, failure: Failure, path: Path) -> bool:
    """Write the reproducer script; False when the target is not a MODULE:ATTR (our ports).
    The target is built with the keyword arguments its worker reports (``constructed``), a JAX
    target's contract case as the JAX adapter builds it (per group)."""
    loc = spec.locator
    if loc is None or loc.kind != "third_party" or failure.step is None:
        return False
    framework = str(loc.options["framework"])
    cfg = _config(case, spec)
    rr = build_reference_for(case.problem(), cfg, spec.dtype)
    built = constructed(case, spec, cfg, rr.contract)
    arrays = list(range(len(case.shapes)))
    groups: list[tuple[list[int], dict[str, Any], dict[str, Any]]] = [(arrays, _fields(cfg), {})]
    jax_contract = framework != "torch" and rr.contract is not None
    if jax_contract and built["groups"] is None:
        return False  # a JAX port that reports no transformation per group
    several = built["groups"] is not None and len(built["groups"]) > 1
    if rr.contract is not None and built["groups"] is not None and (several or jax_contract):
        pairs = zip(built["groups"], rr.contract.groups, strict=True)
        groups = [(list(a), _fields(c), dict(opts)) for (a, opts), (_a, c) in pairs]
    frozen = tuple(rr.contract.frozen) if rr.contract is not None else ()
    assert failure.array is not None
    flat = rr.flat
    t = min(failure.step, len(rr.free_bounds))
    bound = rr.free_bounds[t - 1][N.PARAMS]
    a = failure.array
    budget = np.asarray(bound)[flat.offsets[a] : flat.offsets[a + 1]]
    kwargs = dict(built["kwargs"])
    src = reproducer.script(
        case, framework, spec.name, spec.dtype, groups, kwargs, t, a, budget, frozen
    )
    path.write_text(src)
    return True


def write(out: FuzzResult, spec: PortSpec, opts: FuzzOptions, outdir: Path) -> None:
    """Write the session's files under ``outdir``; their paths go to ``out.files``."""
    outdir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "target": spec.name, "algorithm": spec.algorithm, "dtype": spec.dtype,
        "options": options_json(opts), "verdict": out.verdict, "message": out.message,
        "examples": out.examples, "rejected": out.rejected, "failing_calls": out.failing_calls,
        "elapsed_s": round(out.elapsed_s, 3), "search_s": round(out.search_s, 3),
        "examples_per_s": round(out.rate, 3), "case_digest": out.case_digest,
        "horizon_cut": out.horizon_cut, "cost_element_steps": out.cost,
        "capabilities": None if out.caps is None else {
            "fields": sorted(out.caps.fields), "weight_decay_modes": list(out.caps.weight_decay_modes),
            "contract": sorted(out.caps.contract),
        },
        "statistical_verdict": {
            "alpha_per_case": opts.alpha, "alpha_per_session": opts.alpha * opts.max_examples / 2,
            "rule": "Bonferroni over the session's max_examples cases; two-sided t test (halved)",
        },
    }  # fmt: skip
    if out.case is not None and out.result is not None:
        case, r = out.case, out.result
        (outdir / "case.json").write_text(json.dumps(case.as_json(), indent=1) + "\n")
        out.files["case"] = str(outdir / "case.json")
        summary["case"] = case.as_json()
        summary["case_text"] = case.describe()
        summary["failures"] = [f.to_dict() for f in r.failures[:10]]
        summary["diagnosis"] = {
            "stage": r.stage, "cause": cause_phrase(r),
            "likely_causes": [list(c) for c in r.likely_causes[:5]], "details": r.diagnosis,
        }  # fmt: skip
        try:
            out.files["vector"] = str(write_vector(case, spec, outdir / "vector"))
        except Exception as exc:  # the reference could not export it (non-finite, ...)
            summary["vector_error"] = str(exc)
        f = judged_failure(r.failures)
        try:
            if f is not None and write_reproducer(case, spec, f, outdir / "reproducer.py"):
                out.files["reproducer"] = str(outdir / "reproducer.py")
        except Exception as exc:  # the worker could not rebuild the target: say why, once
            summary["reproducer_error"] = f"not written: {type(exc).__name__}: {exc}"
    path = outdir / "fuzz.json"
    path.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    out.files["summary"] = str(path)


def terminal(out: FuzzResult) -> list[str]:
    """The few lines the terminal shows for a session."""
    lines = [
        f"fuzz {out.target}: {out.examples} cases judged in {out.elapsed_s:.1f} s "
        f"({out.rate:.2f}/s), {out.rejected} rejected (the reference cannot run them)"
    ]
    if out.case is not None and out.result is not None:
        r = out.result
        lines.append(
            f"first failure after {out.search_s:.1f} s; shrunk in {out.failing_calls} failing cases to:"
        )
        lines.append(f"  {out.case.describe()}")
        if out.horizon_cut is not None:
            a, b = out.horizon_cut
            lines.append(f"  (horizon cut from {a} to its first failing step {b})")
        f = r.failures[0] if r.failures else None
        if f is not None:
            lines.append(f"  {f.mode} step {f.step}: {f.message}"[:300])
        if r.stage or r.likely_causes or r.diagnosis:
            cause = cause_phrase(r) or "no cause named"
            lines.append(f"  diagnosis: first disagreeing stage {r.stage or '-'}, {cause}")
    for k, v in out.files.items():
        lines.append(f"{k}: {v}")
    return lines
