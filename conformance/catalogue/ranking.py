r"""Rank the catalogue against a port's re-synced steps: which known deviation explains it?

Errors are measured in the tolerance model's budgets. For a replay $r$ (the reference, or a
catalogue entry) of step $s$ and channel $k$ (``params`` always; ``m``, ``v`` where the port
exposes them),

$$e_{s,k}(r) = \max\Bigl(1,\ \max_i \frac{|\text{port}_i - r_i|}{\text{budget}_i}\Bigr),$$

floored at 1 because inside the budget a difference is indistinguishable from rounding. In a
scenario $\sigma$ an entry's error is $E_\sigma(D) = \max_{s \in \sigma,k} e_{s,k}(D)$, its
distance there $E_\sigma(D)/E_\sigma(\text{reference})$, and its distance the largest over the
scenarios given: one entry must explain every failing scenario (0: it explains the port; 1: no
better than the reference somewhere). Entries are returned when the distance is below $1/2$:
then in every scenario $E(D) < E(\text{ref})/2$, and by the triangle inequality the entry itself
moves at least $E(\text{ref}) - E(D) > E(D)$ budgets away from the reference where the port
does: it accounts for more of the port's departure than it leaves unexplained. A port that
computes an entry exactly up to rounding ($E(D) \le 1$) is named as soon as it is more than two
budgets from the reference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from setadam_ref.config import AdamConfig, Config

from ..formats import fmt
from ..layout import Flat
from .deviation import Deviation
from .evidence import StepEvidence
from .replay import Replay, replay
from .tables import ADAM_CATALOGUE, CATALOGUE

#: a cause must explain the port at least twice as well as the reference (see the module doc)
CLEARLY_BETTER = 0.5
#: distances this close (relative) are a tie: the evidence cannot order the entries
TIE = 1e-9


@dataclass(frozen=True)
class Cause:
    """A catalogued deviation that explains a port's output clearly better than the reference.

    ``distance``: the deviation's error over the reference's, both in budgets and floored at 1
    (module doc); ``first_step``: the first step ``t`` among those given at which the replay
    differs from the reference by more than the budget, when it does.
    """

    name: str
    description: str
    distance: float
    bug_class: str = ""
    stage: str = ""
    first_step: int | None = None


def budget_error(port: np.ndarray, value: np.ndarray, budget: np.ndarray) -> float:
    """$\\max(1, \\max_i |\\text{port}_i - \\text{value}_i| / \\text{budget}_i)$ on flat arrays.

    A coordinate where exactly one side is non-finite, or both are infinite with different
    signs, is infinitely far; NaN against NaN and equal infinities agree.
    """
    if port.size == 0:
        return 1.0
    same_nonfinite = (np.isnan(port) & np.isnan(value)) | (np.isinf(port) & (port == value))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.where(same_nonfinite, 0.0, np.abs(port - value))
        diff = np.where(np.isnan(diff), np.inf, diff)
        ratio = np.where(diff == 0.0, 0.0, diff / budget)
    return max(1.0, float(np.max(np.where(np.isnan(ratio), np.inf, ratio))))


def candidates(config: Config) -> list[Deviation]:
    """The non-equivalent entries of the catalogue of ``config``'s algorithm."""
    catalogue = ADAM_CATALOGUE if isinstance(config, AdamConfig) else CATALOGUE
    return [d for d in catalogue if not d.equivalent]


def distance(worst: float, ref_worst: float) -> float:
    """An entry's distance in one scenario from its error and the reference's (module doc)."""
    if math.isfinite(ref_worst):
        return worst / ref_worst
    return 0.0 if math.isfinite(worst) else math.inf  # the port is non-finite, the reference not


def tied(causes: Sequence[Cause]) -> list[Cause]:
    """The causes at the best distance (ties are reported as ties)."""
    if not causes:
        return []
    best = causes[0].distance
    return [c for c in causes if c.distance <= best * (1.0 + TIE) or c.distance == best]


def _values(r: Replay, k: str) -> tuple[np.ndarray, ...]:
    return {"params": r.params, "m": r.m, "v": r.v}[k]


def _outputs(ev: StepEvidence) -> dict[str, tuple[np.ndarray, ...] | None]:
    return {"params": ev.port_params, "m": ev.port_m, "v": ev.port_v}


def _errors(ev: StepEvidence, r: Replay, flat: Flat) -> dict[str, float]:
    outs = _outputs(ev)
    return {
        k: budget_error(flat.cat(port), flat.cat(_values(r, k)), np.asarray(ev.budgets[k]))
        for k, port in outs.items()
        if port is not None and k in ev.budgets
    }


def _moved(ev: StepEvidence, r: Replay, ref: Replay, flat: Flat) -> float:
    """How far (in budgets) a replay is from the reference in the channels the port exposes."""
    outs = _outputs(ev)
    return max(
        budget_error(flat.cat(_values(r, k)), flat.cat(_values(ref, k)), np.asarray(ev.budgets[k]))
        for k, port in outs.items()
        if (k == "params" or port is not None) and k in ev.budgets
    )


def _worst(into: dict[str, float], new: dict[str, float]) -> None:
    for k, x in new.items():
        into[k] = max(into.get(k, x), x)


def _groups(
    steps: Iterable[StepEvidence], config: Config, layers: Sequence[Sequence[int]] | None
) -> dict[str, list[tuple[StepEvidence, Config, Sequence[Sequence[int]] | None]]]:
    out: dict[str, list[tuple[StepEvidence, Config, Sequence[Sequence[int]] | None]]] = {}
    for ev in steps:
        cfg, lay = (config, layers) if ev.config is None else (ev.config, ev.layers)
        out.setdefault(ev.scenario, []).append((ev, cfg, lay))
    return out


def rank(
    steps: Sequence[StepEvidence],
    config: Config,
    layers: Sequence[Sequence[int]] | None,
    dtype: str,
) -> list[Cause]:
    """The catalogued deviations that explain these re-synced steps of one port, best first.

    ``ADAM_CATALOGUE`` for an ``AdamConfig``, ``CATALOGUE`` for a ``SETAdamConfig``; equivalent
    rewrites are never returned. Steps of several scenarios (``StepEvidence.scenario``, each with
    its own ``config`` and ``layers``) are ranked together: an entry must explain every one.
    Several steps of a scenario rule out entries that would already differ where the port agrees
    with the reference (a counter that goes wrong only from step 2). The port's ``m`` and ``v``
    count where they agree with the reference or some entry explains them, and are left out where
    nothing does (a port keeping its state in another convention). Empty when the port is within
    budget of the reference everywhere or nothing explains it. ``dtype`` is the port's (its
    budgets come with the evidence).
    """
    fmt(dtype)  # an unknown dtype name is an error, not an empty answer
    if not steps:
        return []
    pool = candidates(config)
    worst_of: dict[str, float] = {d.name: 0.0 for d in pool}
    onset: dict[str, int] = {}
    explained = False
    for group in _groups(steps, config, layers).values():
        ref_err: dict[str, float] = {}
        err: dict[str, dict[str, float]] = {d.name: {} for d in pool}
        for ev, cfg, lay in group:
            flat = Flat.make([np.shape(p) for p in ev.params], lay)
            ref = replay(None, ev.params, ev.grads, ev.state, cfg, lay)
            _worst(ref_err, _errors(ev, ref, flat))
            t = int(ev.state.step) + 1
            for d in pool:
                r = replay(d, ev.params, ev.grads, ev.state, cfg, lay)
                _worst(err[d.name], _errors(ev, r, flat))
                if _moved(ev, r, ref, flat) > 1.0:
                    onset[d.name] = min(onset.get(d.name, t), t)
        keep = ["params"]
        for k in ("m", "v"):
            if k in ref_err:
                best = min(e.get(k, math.inf) for e in err.values()) if err else math.inf
                if ref_err[k] <= 1.0 or best < CLEARLY_BETTER * ref_err[k]:
                    keep.append(k)
        ref_worst = max(ref_err.get(k, 1.0) for k in keep)
        if ref_worst <= 1.0:  # this scenario is within budget of the reference: no constraint
            continue
        explained = True
        for d in pool:
            worst = max(err[d.name].get(k, 1.0) for k in keep)
            worst_of[d.name] = max(worst_of[d.name], distance(worst, ref_worst))
    if not explained:  # within budget of the reference: nothing to explain
        return []
    causes = [
        Cause(d.name, d.description, worst_of[d.name], d.bug_class, d.stage, onset.get(d.name))
        for d in pool
        if worst_of[d.name] < CLEARLY_BETTER
    ]
    causes.sort(key=lambda c: (c.distance, c.name))
    return causes
