r"""Rank the catalogue against a port's re-synced steps: which known deviation explains it?

Errors are measured in the tolerance model's budgets. For a replay $r$ (the reference, or a
catalogue entry) of step $s$ and channel $k$ (``params`` always; ``m``, ``v`` where the port
exposes them),

$$e_{s,k}(r) = \max\Bigl(1,\ \max_i \frac{|\text{port}_i - r_i|}{\text{budget}_i}\Bigr),$$

floored at 1 because inside the budget a difference is indistinguishable from rounding. An
entry's error is $E(D) = \max_{s,k} e_{s,k}(D)$ and its distance $E(D)/E(\text{reference})$
(0: it explains the port; 1: no better than the reference). Entries are returned when the
distance is below $1/2$: then $E(D) < E(\text{ref})/2$, and by the triangle inequality the entry
itself moves at least $E(\text{ref}) - E(D) > E(D)$ budgets away from the reference where the
port does: it accounts for more of the port's departure than it leaves unexplained. A port that
computes an entry exactly up to rounding ($E(D) \le 1$) is named as soon as it is more than two
budgets from the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from setadam_ref.config import AdamConfig, Config

from ..formats import fmt
from ..layout import Flat
from .adam_entries import ADAM_CATALOGUE
from .evidence import StepEvidence
from .replay import Replay, replay
from .setadam_entries import CATALOGUE

#: a cause must explain the port at least twice as well as the reference (see the module doc)
CLEARLY_BETTER = 0.5


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


def _errors(ev: StepEvidence, r: Replay, flat: Flat) -> dict[str, float]:
    outs = {"params": (ev.port_params, r.params), "m": (ev.port_m, r.m), "v": (ev.port_v, r.v)}
    return {
        k: budget_error(flat.cat(port), flat.cat(mine), np.asarray(ev.budgets[k]))
        for k, (port, mine) in outs.items()
        if port is not None and k in ev.budgets
    }


def _worst(into: dict[str, float], new: dict[str, float]) -> None:
    for k, x in new.items():
        into[k] = max(into.get(k, x), x)


def rank(
    steps: Sequence[StepEvidence],
    config: Config,
    layers: Sequence[Sequence[int]] | None,
    dtype: str,
) -> list[Cause]:
    """The catalogued deviations that explain these re-synced steps of one port, best first.

    ``ADAM_CATALOGUE`` for an ``AdamConfig``, ``CATALOGUE`` for a ``SETAdamConfig``; equivalent
    rewrites are never returned. Several steps rule out entries that would already differ where
    the port agrees with the reference (a counter that goes wrong only from step 2). The port's
    ``m`` and ``v`` count where they agree with the reference or some entry explains them, and are
    left out where nothing does (a port keeping its state in another convention). Empty when the
    port is within budget of the reference everywhere or nothing explains it. ``dtype`` is the
    port's (its budgets come with the evidence).
    """
    fmt(dtype)  # an unknown dtype name is an error, not an empty answer
    if not steps:
        return []
    catalogue = ADAM_CATALOGUE if isinstance(config, AdamConfig) else CATALOGUE
    candidates = [d for d in catalogue if not d.equivalent]
    ref_err: dict[str, float] = {}
    err: dict[str, dict[str, float]] = {d.name: {} for d in candidates}
    onset: dict[str, int] = {}
    for ev in steps:
        flat = Flat.make([np.shape(p) for p in ev.params], layers)
        ref = replay(None, ev.params, ev.grads, ev.state, config, layers)
        _worst(ref_err, _errors(ev, ref, flat))
        t = int(ev.state.step) + 1
        for d in candidates:
            r = replay(d, ev.params, ev.grads, ev.state, config, layers)
            _worst(err[d.name], _errors(ev, r, flat))
            moved = budget_error(flat.cat(r.params), flat.cat(ref.params), ev.budgets["params"])
            if moved > 1.0:
                onset[d.name] = min(onset.get(d.name, t), t)
    keep = ["params"]
    for k in ("m", "v"):
        if k in ref_err:
            best = min(e.get(k, math.inf) for e in err.values()) if err else math.inf
            if ref_err[k] <= 1.0 or best < CLEARLY_BETTER * ref_err[k]:
                keep.append(k)
    ref_worst = max(ref_err.get(k, 1.0) for k in keep)
    if ref_worst <= 1.0:  # within budget of the reference: nothing to explain
        return []
    causes = []
    for d in candidates:
        worst = max(err[d.name].get(k, 1.0) for k in keep)
        if math.isfinite(ref_worst):
            distance = worst / ref_worst
        else:  # the port is non-finite where the reference is not
            distance = 0.0 if math.isfinite(worst) else math.inf
        if distance < CLEARLY_BETTER:
            causes.append(
                Cause(d.name, d.description, distance, d.bug_class, d.stage, onset.get(d.name))
            )
    causes.sort(key=lambda c: (c.distance, c.name))
    return causes
