"""The likely cause of a failing port, from every piece of evidence: re-synced steps and
free-running trajectories, over all failing scenarios.

Two rankings can speak (``ranking.rank`` on re-synced steps, ``blackbox.rank_free`` on
free-running runs). Re-synced steps are sharper (one step, tight budgets) but rest on writing
the port's state, which only covers the entries the harness found (m, v, vmax, the counter): a
port that also keeps something else (a cached minimum, a schedule's product) is re-synced
inexactly. A free-running run rests on nothing but the port's parameters. Hence:

1. when the free-running ranking also names the re-synced ranking's best entry, the evidence
   agrees: the entries named by both are reported, each at the larger of its two distances;
2. when the free-running runs contradict the re-synced best entry, the free-running ranking is
   reported (it cannot have been misled by the state), with a note saying so. An entry that
   half-explains both is no compromise worth reporting over one that explains the runs;
3. when the runs name nothing, nothing is reported: the re-synced best is not confirmed by
   the port's own behaviour (a note names it);
4. when only one kind of evidence exists (state unreadable; or the port passes free-running),
   its ranking is reported.

``Explanation.basis`` says which, in words, for the report; ties at the best distance are
reported as ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from setadam_ref.config import Config

from .blackbox import FreeRun, rank_free
from .evidence import StepEvidence
from .ranking import Cause, rank, tied


@dataclass
class Explanation:
    """The causes, best first; the evidence they rest on; the best ones (ties) and notes."""

    causes: list[Cause] = field(default_factory=list)
    basis: str = ""
    best: list[Cause] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _both(resync: list[Cause], free: list[Cause]) -> list[Cause]:
    by_name = {c.name: c for c in free}
    out = []
    for c in resync:
        f = by_name.get(c.name)
        if f is not None:
            first = c.first_step if c.first_step is not None else f.first_step
            out.append(replace(c, distance=max(c.distance, f.distance), first_step=first))
    out.sort(key=lambda c: (c.distance, c.name))
    return out


def explain(
    steps: Sequence[StepEvidence],
    runs: Sequence[FreeRun],
    config: Config,
    layers: Sequence[Sequence[int]] | None,
    dtype: str,
) -> Explanation:
    """Rank the catalogue on re-synced ``steps`` and free-running ``runs`` (either may be empty)
    and combine the two as the module says."""
    resync = rank(steps, config, layers, dtype) if steps else []
    free = rank_free(runs, dtype) if runs else []
    n_s = len({s.scenario for s in steps})
    n_r = len(runs)
    ex = Explanation()
    if resync and free:
        confirmed = {c.name for c in tied(resync)} & {c.name for c in free}
        both = _both(resync, free) if confirmed else []
        if both:
            ex.causes = both
            ex.basis = f"re-synced steps ({n_s} scenario(s)) and free-running runs ({n_r})"
        else:
            ex.causes = free
            ex.basis = f"free-running runs ({n_r} scenario(s))"
            ex.notes.append(
                f"the free-running runs contradict {resync[0].name}, the best explanation of the "
                "re-synced steps: the port may keep state the harness did not find (its re-synced "
                "steps then start from an incomplete state), so the free-running evidence is used"
            )
    elif resync and runs:
        ex.notes.append(
            f"the re-synced steps resemble {resync[0].name}, but no catalogued deviation "
            f"explains the free-running runs ({n_r} scenario(s)), that one included"
        )
    elif resync:
        ex.causes = resync
        ex.basis = f"re-synced steps ({n_s} scenario(s))"
    elif free:
        ex.causes = free
        ex.basis = f"free-running runs ({n_r} scenario(s)): black-box, from the parameters only"
    ex.best = tied(ex.causes)
    return ex
