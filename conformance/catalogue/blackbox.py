r"""Black-box diagnosis: rank the catalogue against a port's free-running parameter trajectories.

When a port's state cannot be read or written, no step can be re-synced; what remains is the
port run free from the same start as the reference. Every candidate entry is replayed free from
that start with the same gradients (``replay.free_run``), and compared with the port step by
step in the free-running budgets of the tolerance model (``ReferenceRun.free_bounds``, the bound
on $|\text{port}_t - \text{reference}_t|$ for a correct port in its dtype). For a run $\sigma$
(one failing open-loop scenario) and a replay $r$ (the reference, or entry $D$),

$$E_\sigma(r) = \max_{t \le T_\sigma} \max\Bigl(1,\ \max_i
  \frac{|\theta^{\text{port}}_{t,i} - \theta^{r}_{t,i}|}{B_{t,i}}\Bigr),\qquad
  \text{distance}(D) = \max_\sigma \frac{E_\sigma(D)}{E_\sigma(\text{reference})},$$

the free-running counterpart of ``ranking``: floored at 1 (inside the budget is rounding), one
entry must explain every failing scenario, and it is named below $1/2$ (the same triangle
argument). Closed-loop scenarios are left out: their gradients depend on the parameters, so
their trajectories are not judged against a budget. ``first_step`` is the first step at which
the entry's own trajectory leaves the budget around the reference's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from setadam_ref.config import Config

from ..formats import fmt
from ..layout import Flat
from .ranking import CLEARLY_BETTER, Cause, budget_error, candidates, distance
from .replay import free_run

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..reference_run import ReferenceRun

Arrays = tuple[np.ndarray, ...]


class FreeRun(NamedTuple):
    """A port run free through one open-loop scenario.

    ``params0`` and ``grads`` (one tuple per step): the inputs exactly as the port got them
    (rounded to its dtype); ``port``: its flat parameters after each step (as many steps as were
    kept); ``budgets``: the flat free-running budget of the parameters at each of those steps.
    """

    scenario: str
    params0: Arrays
    grads: Sequence[Arrays]
    port: Sequence[np.ndarray]
    budgets: Sequence[np.ndarray]
    config: Config
    layers: Sequence[Sequence[int]] | None = None


def free_run_of(rr: ReferenceRun, port: Sequence[np.ndarray]) -> FreeRun:
    """The ``FreeRun`` of a port's flat parameters ``port`` (steps 1..len) along ``rr``."""
    grads, budgets = rr.free_window(len(port))  # recomputed when the run is streamed
    return FreeRun(rr.name, rr.params0, grads, list(port), budgets, rr.config, rr.layers)


def _error(run: FreeRun, flat: Flat, trajectory: Sequence[Arrays]) -> float:
    return max(
        (budget_error(p, flat.cat(x), b) for p, x, b in zip(run.port, trajectory, run.budgets)),
        default=1.0,
    )


def rank_free(runs: Sequence[FreeRun], dtype: str) -> list[Cause]:
    """The catalogued deviations whose free-running replay explains every given run, best first.

    Empty when every run is within budget of the reference or nothing explains them all.
    """
    fmt(dtype)
    usable = [r for r in runs if r.port]
    if not usable:
        return []
    pool = candidates(usable[0].config)
    worst_of = {d.name: 0.0 for d in pool}
    onset: dict[str, int] = {}
    explained = False
    for run in usable:
        flat = Flat.make([np.shape(p) for p in run.params0], run.layers)
        steps = run.grads[: len(run.port)]
        ref = [r.params for r in free_run(None, run.params0, steps, run.config, run.layers)]
        ref_err = _error(run, flat, ref)
        if ref_err <= 1.0:
            continue
        explained = True
        for d in pool:
            if worst_of[d.name] >= CLEARLY_BETTER:
                continue  # already ruled out by another run
            worst = 1.0
            for t, r in enumerate(free_run(d, run.params0, steps, run.config, run.layers), 1):
                here = flat.cat(r.params)
                worst = max(worst, budget_error(run.port[t - 1], here, run.budgets[t - 1]))
                if budget_error(here, flat.cat(ref[t - 1]), run.budgets[t - 1]) > 1.0:
                    onset[d.name] = min(onset.get(d.name, t), t)
                if distance(worst, ref_err) >= CLEARLY_BETTER:
                    break  # ruled out: the rest of the trajectory cannot bring it back
            worst_of[d.name] = max(worst_of[d.name], distance(worst, ref_err))
    if not explained:
        return []
    causes = [
        Cause(d.name, d.description, worst_of[d.name], d.bug_class, d.stage, onset.get(d.name))
        for d in pool
        if worst_of[d.name] < CLEARLY_BETTER and not math.isnan(worst_of[d.name])
    ]
    causes.sort(key=lambda c: (c.distance, c.name))
    return causes
