"""The catalogue of known deviations, replayed through the reference to name a port's likely bug.

Each entry (:class:`Deviation`) is SET-Adam (``CATALOGUE``) or Adam (``ADAM_CATALOGUE``) with
exactly one thing changed: a stage function swapped, the configuration, the step counter or the
layering transformed. :func:`replay` runs the plain reference step with that change;
:func:`rank` names the entries that explain a port's re-synced steps clearly better than the
reference, measured in the tolerance model's budgets; :func:`rank_free` does the same from its
free-running trajectories when its state cannot be re-synced (black-box diagnosis). Mathematically equivalent rewrites are in
the catalogue with ``equivalent=True`` and are never a cause. The guide page
docs/src/guide/deviations.md lists every entry with its signature and size.
"""

from __future__ import annotations

from .blackbox import FreeRun, free_run_of, rank_free
from .deviation import Deviation, Relayout, entry
from .evidence import StepEvidence, step_evidence
from .explain import Explanation, explain
from .ranking import CLEARLY_BETTER, Cause, rank, tied
from .replay import Replay, free_run, replay
from .tables import ADAM_CATALOGUE, CATALOGUE

__all__ = [
    "ADAM_CATALOGUE",
    "CATALOGUE",
    "CLEARLY_BETTER",
    "Cause",
    "Deviation",
    "Explanation",
    "FreeRun",
    "Relayout",
    "Replay",
    "StepEvidence",
    "by_name",
    "entry",
    "explain",
    "free_run",
    "free_run_of",
    "rank",
    "rank_free",
    "replay",
    "step_evidence",
    "tied",
]


def by_name(name: str) -> Deviation:
    """The catalogue entry called ``name`` (KeyError listing the names otherwise)."""
    for d in (*CATALOGUE, *ADAM_CATALOGUE):
        if d.name == name:
            return d
    known = [d.name for d in (*CATALOGUE, *ADAM_CATALOGUE)]
    raise KeyError(f"no deviation {name!r}; known: {known}")
