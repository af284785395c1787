"""The fuzz loop: hypothesis draws cases, the harness judges the target on each, shrinks a failure.

The target runs in one worker process for the whole session (:mod:`conformance.process_session`,
reused across examples as ``run`` reuses a worker across ports; replaced when the target kills
it). Each example is judged exactly as a ``check`` scenario is: the reference run with its error
budgets (:mod:`conformance.reference_run`), the port driven re-synced where its state can be
written and free-running (:mod:`conformance.drive`), the comparison against the tolerance model
(:mod:`conformance.compare`), and the statistical verdict (:mod:`conformance.systematic`) over
its re-synced steps. A case fails when either fires; a case the reference itself cannot run
(non-finite) is rejected.

**False alarms.** A correct port fails a case of the rigorous budget never (a bound, not a
quantile); only the statistical verdict can cry wolf. Each case's check runs it at
``alpha = ALPHA / max_examples`` (Bonferroni over the session's at most ``max_examples`` search
cases, each check Bonferroni over its own tests), so a fuzz session of a correct port fails with
probability at most ``ALPHA / 2`` (``systematic``'s two-sided bound), whatever its length. Shrink
steps run after the first failure and cannot turn a pass into a fail. On a failure hypothesis shrinks the case; the last
failing call is the shrunk one, and it is judged once more with the diagnosis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.database import DirectoryBasedExampleDatabase

from ..process_session import ProcessSession, Worker
from ..reference_run import ReferenceCache
from ..results import PortResult, PortSpec
from ..runner import check_port
from ..systematic import ALPHA
from .cases import Capabilities, Case, base_of, cases, cost, probe_cases, probes


class _OutOfTime(BaseException):
    """Ends the search when its time budget is spent (not an Exception: hypothesis lets it
    through at once instead of shrinking it as a failure)."""


#: the ``ci`` setting: a fixed, small budget, derandomized, no database
CI_EXAMPLES = 25


@dataclass
class FuzzOptions:
    """How long and how to search (see ``setadam-conformance fuzz --help``)."""

    max_examples: int = 1000
    time_budget_s: float | None = 60.0
    seed: int | None = None
    database: Path | None = None  # None: no example database
    derandomize: bool = False
    timeout_s: float = 60.0
    max_memory: int | None = None

    @property
    def alpha(self) -> float:
        """The statistical verdict's false-alarm bound per case (module docstring)."""
        return ALPHA / max(self.max_examples, 1)


@dataclass
class FuzzResult:
    """The outcome of a fuzz session; ``case``/``result`` hold the shrunk failure, if any."""

    target: str
    verdict: str = "pass"  # "pass" | "fail" | "error"
    examples: int = 0  # cases judged
    rejected: int = 0  # cases the reference cannot run
    failing_calls: int = 0  # judged cases that failed (the first and the shrink steps)
    elapsed_s: float = 0.0
    search_s: float = 0.0  # until the first failure (or the end)
    caps: Capabilities | None = None
    case: Case | None = None
    result: PortResult | None = None
    message: str = ""
    files: dict[str, str] = field(default_factory=dict)
    #: sha256 over the cases judged, in order: equal for two sessions that drew the same cases
    case_digest: str = ""
    #: element-steps judged (``cases.cost``: the cost model), search and shrinking together
    cost: int = 0
    #: (from, to): the shrunk case's horizon cut to its first failing step (``_cut_horizon``)
    horizon_cut: tuple[int, int] | None = None

    @property
    def rate(self) -> float:
        return self.examples / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Target:
    """The target's worker, kept for the whole session and replaced when the target kills it."""

    def __init__(self, spec: PortSpec, opts: FuzzOptions) -> None:
        assert spec.locator is not None, "fuzz runs targets in worker processes only"
        self.spec, self.opts = spec, opts
        self.worker: Worker | None = None

    def session(self) -> ProcessSession:
        if self.worker is None or not self.worker.alive:
            self.worker = Worker(self.opts.max_memory)
        assert self.spec.locator is not None
        return ProcessSession(self.spec.locator, self.opts.timeout_s, worker=self.worker,
                              max_memory=self.opts.max_memory)  # fmt: skip

    def judge(self, case: Case, diagnose: bool = False) -> PortResult:
        return check_port(
            self.spec, scenarios=[case.scenario()], session=self.session(),
            cache=ReferenceCache(1), diagnose=diagnose, max_failures=20,
            systematic_alpha=self.opts.alpha,
        )  # fmt: skip

    def capabilities(self) -> Capabilities:
        """Ask the target (in its worker) which hyperparameters it takes."""
        base = self.spec.base_config or base_of(self.spec.algorithm)
        ses = self.session()
        ok: set[str] = set()
        for name, change in probes(self.spec.algorithm).items():
            if ses.supports(dataclasses.replace(base, **change)) is None:
                ok.add(name)
        modes = tuple(m for m in ("l2", "decoupled") if f"wd:{m}" in ok)
        fields = frozenset(n for n in ok if not n.startswith("wd:"))
        return Capabilities(self.spec.algorithm, self.spec.dtype, fields, modes, self.contract())

    def contract(self) -> frozenset[str]:
        """The contract features the target takes: those whose tiny probe case its check does
        not skip (a probe that fails is taken: the search will find and shrink it)."""
        out = set()
        for name, case in probe_cases(self.spec.algorithm).items():
            r = self.judge(case)
            if not (r.scenarios and r.scenarios[0].status == "skip"):
                out.add(name)
        return frozenset(out)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.kill()


def _settings(opts: FuzzOptions) -> settings:
    db = DirectoryBasedExampleDatabase(str(opts.database)) if opts.database else None
    return settings(
        max_examples=opts.max_examples, deadline=None, database=db,
        derandomize=opts.derandomize, verbosity=Verbosity.quiet, print_blob=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    )  # fmt: skip


def fuzz(
    spec: PortSpec,
    opts: FuzzOptions,
    progress: Callable[[FuzzResult], None] | None = None,
) -> FuzzResult:
    """Fuzz ``spec`` (a spec with a locator) against the reference; the shrunk failure if any.

    The time budget bounds the search; once a failure is found, shrinking runs to the end (every
    shrink step is one more judged case). Never raises for a misbehaving target."""
    out = FuzzResult(spec.name)
    target = _Target(spec, opts)
    t0 = time.monotonic()
    last: list[tuple[Case, PortResult]] = []
    digest = hashlib.sha256()
    try:
        caps = out.caps = target.capabilities()
        t_search = time.monotonic()  # the time budget is the search's: setup and probes not

        @given(cases(caps))
        def prop(case: Case) -> None:
            if not last and opts.time_budget_s is not None:
                if time.monotonic() - t_search > opts.time_budget_s:
                    raise _OutOfTime
            digest.update(case.describe().encode() + b"\n")
            out.case_digest = digest.hexdigest()
            r = target.judge(case)
            out.cost += cost(case)
            if r.scenarios and r.scenarios[0].status == "skip":
                out.rejected += 1
                reject()
            out.examples += 1
            if progress is not None:
                progress(out)
            if r.verdict == "fail":
                if not last:
                    out.search_s = time.monotonic() - t0
                out.failing_calls += 1
                last.append((case, r))
                del last[:-1]
                raise AssertionError(r.message)

        prop = _settings(opts)(prop)
        if opts.seed is not None:
            prop = hypothesis_seed(opts.seed)(prop)
        try:
            prop()
        except _OutOfTime:
            pass
        except Exception as exc:  # the shrunk failure (or hypothesis saying why it stopped)
            if not last:
                out.verdict, out.message = "error", f"the fuzz loop stopped: {exc}"[:400]
    except Exception as exc:  # the target could not be set up (import, convention, device)
        out.verdict, out.message = "error", f"cannot fuzz {spec.name}: {exc}"[:400]
        target.close()
        out.elapsed_s = time.monotonic() - t0
        return out
    out.elapsed_s = time.monotonic() - t0
    if last:
        case, r = last[-1]
        case = _cut_horizon(target, case, r, out)
        out.case = case
        out.result = target.judge(case, diagnose=True)
        out.verdict = "fail" if out.result.verdict == "fail" else "error"
        out.message = out.result.message
        if out.verdict == "error":
            out.message = f"the shrunk case did not fail again (flaky target?): {out.message}"
    elif out.verdict == "pass":
        out.search_s = out.elapsed_s
        out.message = f"no disagreement in {out.examples} cases"
    target.close()
    return out


def first_failing_step(r: PortResult) -> int | None:
    """The earliest step at which any comparison failed (free-running compares every step)."""
    steps = [f.step for f in r.failures if f.step is not None]
    return min(steps) if steps else None


def _cut_horizon(target: _Target, case: Case, r: PortResult, out: FuzzResult) -> Case:
    """The shrunk case cut to its first failing step, when that still fails.

    Hypothesis stops shrinking after five minutes; a long case (a judge of ~1000 steps takes
    seconds) may leave it with its horizon unshrunk. Its gradients, schedule factors (but the
    horizon-relative cosine's) and absences of step t do not depend on the horizon, so the
    case cut to its first failing step s fails at s again: one more judge, kept only if it does
    (``out.horizon_cut`` records it)."""
    s = first_failing_step(r)
    if s is None or s >= case.steps:
        return case
    cut = dataclasses.replace(case, steps=s)
    if target.judge(cut).verdict != "fail":
        return case
    out.failing_calls += 1
    out.horizon_cut = (case.steps, s)
    return cut


def options_json(opts: FuzzOptions) -> dict[str, Any]:
    d = dataclasses.asdict(opts)
    d["database"] = None if opts.database is None else str(opts.database)
    return d
