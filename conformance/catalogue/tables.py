"""The two catalogues, assembled from their entry modules in the order the guide lists them.

``CATALOGUE`` (SET-Adam) and ``ADAM_CATALOGUE`` (Adam): the base entries (eps placement, bias
correction, counter, moments, the stages, weight decay), guard constants and lower precision
(``guards``), order, scope, counting and timing (``timing``), then whole other algorithms
(``algorithms``). Names are unique across both.
"""

from __future__ import annotations

from . import adam_entries, algorithms, guards, setadam_entries, timing
from .deviation import Deviation

CATALOGUE: tuple[Deviation, ...] = (
    *setadam_entries.ENTRIES,
    *guards.SETADAM,
    *timing.SETADAM,
    *algorithms.SETADAM,
)
ADAM_CATALOGUE: tuple[Deviation, ...] = (
    *adam_entries.ENTRIES,
    *guards.ADAM,
    *timing.ADAM,
    *algorithms.ADAM,
)
