"""The scenarios a family's planted port must pass: every regime but the one its bug shows in.

The ``--quick`` subset less the scale families (a kernel of chunks or launches is judged there on
its own), and the contract families (param groups, lr schedules, sparse participation): a bug of
chunks, layouts, checkpoints or compilation must not show in them, and a correct port of those
must not fail them (no false alarm from several groups or a counter kept per group).
"""

from __future__ import annotations

from conformance import scenarios as S


def older(*, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Their names, in listing order, less ``without`` (each with the reason at its caller)."""
    quick = [s.name for s in S.select(None, quick=True) if "scale" not in s.tags]
    names = dict.fromkeys(quick + [s.name for s in S.CONTRACT])
    return tuple(n for n in names if n not in without)
