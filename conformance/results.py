"""The records every stage of the pipeline passes on: measures, failures, scenario and port results.

scenario -> reference run -> port run -> comparison (:class:`Measure`, :class:`Worst`) ->
diagnosis (:class:`Evidence`) -> report (:class:`PortResult`, :class:`ScenarioResult`,
:class:`Failure`). Nothing here computes; every module of the pipeline imports these records and
none imports the runner.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from setadam_ref import Config

from .interface import Port, PortState

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .reference_run import ReferenceRun, ResyncStep
    from .scenarios import Scenario

PortFactory = Callable[[Config], Port]
Supports = Callable[[Config], "str | None"]
DEFAULT_TIMEOUT_S = 60.0

#: what a scenario (and a port) can come to: judged and within budget, judged and wrong (or the
#: port raised, hung or crashed), could not be set up for a reason that is not the port's
#: arithmetic, does not apply (skipped), or applies but nothing was judged
STATUSES: tuple[str, ...] = ("pass", "fail", "error", "skip", "not_judged")


def json_float(x: float) -> float | str:
    """``x`` for JSON: finite floats as they are, ``"nan"``/``"inf"``/``"-inf"`` otherwise."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


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
    judged: bool = True  # False: measured and reported only (hidden-convention state, closed loop)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "judged": self.judged,
            "fraction": json_float(self.fraction),
            "ulps": json_float(self.ulps),
            "step": self.step,
            "array": self.array,
            "index": list(self.index) if self.index is not None else None,
            "port_value": json_float(self.port_value),
            "ref_value": json_float(self.ref_value),
            "budget": json_float(self.budget),
        }


@dataclass
class Measure:
    """Comparison of one quantity at one step."""

    worst: Worst
    n_fail: int
    n_unresolved: int
    n_nonfinite: int  # port non-finite where the reference is finite and the budget finite
    max_ulps: float


@dataclass
class Failure:
    """One reason a port is not conformant."""

    scenario: str
    mode: str  # "resync" | "free" | "setup"
    step: int | None
    stage: str | None  # quantity that disagrees (params, m, v, stage name) or None
    kind: str  # tolerance | systematic | nonfinite | exception | timeout | crash | interface | side_effect
    message: str
    array: int | None = None
    index: tuple[int, ...] | None = None
    port_value: float | None = None
    ref_value: float | None = None
    ulps: float | None = None
    budget_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["index"] = list(self.index) if self.index is not None else None
        for k in ("port_value", "ref_value", "ulps", "budget_fraction"):
            if d[k] is not None:
                d[k] = json_float(d[k])
        return d


@dataclass
class ScenarioResult:
    """How one scenario went for one port; ``reason`` says why it was skipped, not judged, errored
    or failed, and ``notes`` what was measured but not judged."""

    scenario: str
    status: str  # one of STATUSES
    reason: str = ""
    steps: int = 0
    closed_loop: bool = False
    resync: dict[str, Worst] = field(default_factory=dict)  # worst per quantity
    free: dict[str, Worst] = field(default_factory=dict)
    free_judged: bool = True
    judged: int = 0  # comparisons judged (re-synced steps and open-loop free-running steps)
    notes: list[str] = field(default_factory=list)
    unresolved: int = 0
    free_series: list[float] = field(default_factory=list)  # worst params fraction per step
    free_ulps: list[float] = field(default_factory=list)  # worst params ulps per step
    duration_s: float = 0.0

    def to_dict(self, series: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "scenario": self.scenario,
            "status": self.status,
            "reason": self.reason,
            "steps": self.steps,
            "closed_loop": self.closed_loop,
            "free_judged": self.free_judged,
            "judged": self.judged,
            "notes": list(self.notes),
            "unresolved": self.unresolved,
            "duration_s": round(self.duration_s, 4),
            "resync": {k: w.to_dict() for k, w in self.resync.items()},
            "free": {k: w.to_dict() for k, w in self.free.items()},
        }
        if series:
            d["free_series"] = [json_float(x) for x in self.free_series]
            d["free_ulps"] = [json_float(x) for x in self.free_ulps]
        return d


@dataclass
class PortOutput:
    """What a port's worker process wrote to its stdout and stderr (never shown in the terminal)."""

    bytes: int
    tail: str  # the last few lines, as text (undecodable bytes replaced)

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "tail": self.tail}


@dataclass
class PortResult:
    """The verdict on one port in one dtype, with every scenario and failure behind it."""

    name: str
    algorithm: str
    dtype: str
    device: str
    verdict: str = "pass"  # one of STATUSES
    message: str = ""
    scenarios: list[ScenarioResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    failures_not_listed: int = 0  # failures past the list's limit or repeating a listed one
    output: PortOutput | None = None
    stage: str | None = None  # first disagreeing stage (diagnosis)
    diagnosis: dict[str, Any] | None = None
    likely_causes: list[tuple[str, float, str]] = field(default_factory=list)
    exposes_state: bool | None = None
    exposes_stages: bool | None = None
    #: why the port's state could not be read or re-synced (said once per port), else ""
    state_note: str = ""
    #: the statistical verdict (conformance.systematic.SystematicVerdict.to_dict), if run
    systematic: dict[str, Any] | None = None
    duration_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.name} {self.dtype}"

    def worst(self, mode: str, judged: bool = True) -> dict[str, Worst]:
        """Worst measurement per quantity for ``mode`` resync / free: over judged comparisons
        (``judged=True``), or over those measured and reported only (``judged=False``)."""
        out: dict[str, Worst] = {}
        for s in self.scenarios:
            for q, w in (s.resync if mode == "resync" else s.free).items():
                if w.judged != judged:
                    continue
                if q not in out or _key(w) > _key(out[q]):
                    out[q] = w
        return out

    def worst_fraction(self) -> float | None:
        """The worst judged budget fraction; None when nothing was judged."""
        vals = [w.fraction for m in ("resync", "free") for w in self.worst(m).values()]
        return max(vals) if vals else None

    @property
    def unresolved(self) -> int:
        """Coordinates the dtype cannot resolve (infinite budget), over every scenario."""
        return sum(s.unresolved for s in self.scenarios)

    def count(self, status: str) -> int:
        return sum(1 for s in self.scenarios if s.status == status)

    def to_dict(self, series: bool = False) -> dict[str, Any]:
        return {
            "name": self.name,
            "algorithm": self.algorithm,
            "dtype": self.dtype,
            "device": self.device,
            "verdict": self.verdict,
            "message": self.message,
            "stage": self.stage,
            "exposes_state": self.exposes_state,
            "exposes_stages": self.exposes_stages,
            "state_note": self.state_note,
            "duration_s": round(self.duration_s, 3),
            "worst_fraction": None if (wf := self.worst_fraction()) is None else json_float(wf),
            "worst": {
                m: {q: w.to_dict() for q, w in self.worst(m).items()} for m in ("resync", "free")
            },
            "reported": {
                m: {q: w.to_dict() for q, w in self.worst(m, judged=False).items()}
                for m in ("resync", "free")
            },
            "scenario_counts": {st: self.count(st) for st in STATUSES},
            "unresolved": self.unresolved,
            "output": None if self.output is None else self.output.to_dict(),
            "failures": [f.to_dict() for f in self.failures],
            "failures_not_listed": self.failures_not_listed,
            "likely_causes": [
                {"cause": c, "score": json_float(s), "description": d}
                for c, s, d in self.likely_causes
            ],
            "diagnosis": self.diagnosis,
            "systematic": self.systematic,
            "scenarios": [s.to_dict(series) for s in self.scenarios],
        }


def _key(w: Worst) -> tuple[float, float]:
    return (w.fraction, w.ulps)


@dataclass(frozen=True)
class PortLocator:
    """How a worker process rebuilds a port: plain, picklable data (no code objects).

    ``kind`` ``"registry"``: ``name`` is a port of :mod:`conformance.adapters.registry` (in
    ``dtype`` on ``device``); ``"third_party"``: ``name`` is ``MODULE:ATTR`` and ``options`` holds
    ``framework``, ``algorithm``, ``hyper``, ``target_hyper``, ``reference_hyper``,
    ``weight_decay_mode`` and ``state_map`` for
    :func:`conformance.adapters.third_party.spec`. ``framework`` (``"torch"``, ``"jax"`` or None)
    is imported before the target, under the start-up allowance rather than the per-step timeout.
    """

    kind: str
    name: str
    dtype: str
    device: str
    framework: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PortSpec:
    """A port the runner can build for any scenario config (see ``conformance.adapters``).

    ``factory`` builds it in this process; ``locator`` tells a worker process how to build it
    (the command line always checks through a worker; a spec may have either or both)."""

    name: str
    algorithm: str  # "adam" | "setadam"
    dtype: str
    device: str
    factory: PortFactory | None = None
    supports: Supports | None = None  # None: every config; else reason why not, or None
    base_config: Config | None = None
    judge_state: bool = True  # m/v follow the reference convention (unscaled v)
    timeout_s: float = DEFAULT_TIMEOUT_S
    scenarios: tuple[str, ...] | None = None  # restrict to these scenarios (None: all)
    quick_subset: bool = False  # use the --quick scenario subset (with full horizons)
    locator: PortLocator | None = None


@dataclass
class Evidence:
    """What the diagnosis needs about the first failing re-synced step."""

    scenario: Scenario
    reference: ReferenceRun
    resync: ResyncStep
    port_params: tuple[np.ndarray, ...]
    port_state: PortState | None
    port_stages: dict[str, tuple[np.ndarray, ...]] | None
    measures: dict[str, Measure]
    history: list[Evidence] = field(default_factory=list)  # other re-synced steps, same scenario
