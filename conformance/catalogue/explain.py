"""The likely cause of a failing port, from every piece of evidence: re-synced steps and
free-running trajectories, over all failing scenarios.

Two rankings can speak (``ranking.rank`` on re-synced steps, ``blackbox.rank_free`` on
free-running runs). Re-synced steps are sharper (one step, tight budgets) but rest on writing
the port's state, which only covers the entries the harness found (m, v, vmax, the counter): a
port that also keeps something else (a cached minimum, a schedule's product) is re-synced from
an incomplete state, and its re-synced steps can look like another entry's. A free-running run
rests on nothing but the port's parameters. Hence:

1. when the port fails free-running, the free-running ranking decides: entries are reported in
   the order of their free-running distance, with that distance. Where free-running distances
   tie (inside the budget every entry that reproduces the port scores the floor), the re-synced
   distance orders them, and the re-synced step at which an entry shows is its ``first_step``.
   When the two rankings' best entries differ, a note says so;
2. when the port fails free-running but no entry explains its runs, nothing is reported (a note
   names what the re-synced steps resemble): the cause would not be confirmed by the port's own
   behaviour;
3. when the port fails only re-synced (its runs are within budget), the re-synced ranking is
   reported; when its state cannot be read, the free-running one (black-box).

``Explanation.basis`` says which, in words, for the report; ties at the best distance are
reported as ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from setadam_ref.config import Config

from .blackbox import FreeRun, rank_free
from .evidence import StepEvidence
from .ranking import TIE, Cause, rank, tied


@dataclass
class Explanation:
    """The causes, best first; the evidence they rest on; the best ones (ties) and notes."""

    causes: list[Cause] = field(default_factory=list)
    basis: str = ""
    best: list[Cause] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _ordered(free: list[Cause], resync: list[Cause]) -> list[Cause]:
    """``free`` in its order, ties in free-running distance broken by the re-synced distance
    (an entry the re-synced steps do not name comes after those they do)."""
    by_name = {c.name: c for c in resync}
    out: list[Cause] = []
    group: list[Cause] = []

    def flush() -> None:
        group.sort(key=lambda c: (by_name[c.name].distance if c.name in by_name else 2.0, c.name))
        out.extend(group)
        group.clear()

    for c in free:
        if group and c.distance > group[0].distance * (1.0 + TIE):
            flush()
        s = by_name.get(c.name)
        group.append(
            c if s is None or s.first_step is None else replace(c, first_step=s.first_step)
        )
    flush()
    return out


def explain(
    steps: Sequence[StepEvidence],
    runs: Sequence[FreeRun],
    config: Config,
    layers: Sequence[Sequence[int]] | None,
    dtype: str,
) -> Explanation:
    """Rank the catalogue on re-synced ``steps`` and free-running ``runs`` (either may be empty;
    ``runs`` are those of scenarios where the port fails free-running) and combine the two as
    the module says."""
    resync = rank(steps, config, layers, dtype) if steps else []
    free = rank_free(runs, dtype) if runs else []
    n_s = len({s.scenario for s in steps})
    n_r = len(runs)
    ex = Explanation()
    if free:
        ex.causes = _ordered(free, resync)
        if resync:
            ex.basis = f"free-running runs ({n_r} scenario(s)), ties by re-synced steps ({n_s})"
            best_s = {c.name for c in tied(resync)}
            if not best_s & {c.name for c in tied(ex.causes)}:
                ex.notes.append(
                    f"the re-synced steps are best explained by {resync[0].name}, the "
                    f"free-running runs by {ex.causes[0].name}: the port may keep state the "
                    "harness did not find (its re-synced steps then start from an incomplete "
                    "state), so the free-running evidence decides"
                )
        else:
            ex.basis = f"free-running runs ({n_r} scenario(s))" + (
                "" if steps else ": black-box, from the parameters only"
            )
    elif resync and runs:
        ex.notes.append(
            f"the re-synced steps resemble {resync[0].name}, but no catalogued deviation "
            f"explains the free-running runs ({n_r} scenario(s)), that one included"
        )
    elif resync:
        ex.causes = resync
        ex.basis = f"re-synced steps ({n_s} scenario(s))"
    ex.best = tied(ex.causes)
    return ex
