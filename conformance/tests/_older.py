"""The scenarios a family's planted port must pass: every regime but the one its bug shows in.

The ``--quick`` subset less the scale families (a kernel of chunks or launches is judged there on
its own), and the contract families (param groups, lr schedules, sparse participation): a bug of
chunks, layouts, checkpoints or compilation must not show in them, and a correct port of those
must not fail them (no false alarm from several groups or a counter kept per group).
"""

from __future__ import annotations

import functools
from typing import Any

from conformance import scenarios as S
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory


def older(*, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Their names, in listing order, less ``without`` (each with the reason at its caller)."""
    quick = [s.name for s in S.select(None, quick=True) if "scale" not in s.tags]
    names = dict.fromkeys(quick + [s.name for s in S.CONTRACT])
    return tuple(n for n in names if n not in without)


def older_for_group_counters() -> tuple[str, ...]:
    """:func:`older` for a port whose step counter is one per param group (``group["k"]``): not
    ``sparse``, which rejects that (a skipped parameter bias-corrected with its group's count;
    test_meta_scale_families.test_a_group_counter_is_resynced_in_every_group)."""
    return older(without=("sparse",))


@functools.cache
def check_planted(cls: Any, dtype: str, scenarios: tuple[str, ...]) -> PortResult:
    """One check of planted SET-Adam port ``cls`` (a torch optimizer class) over ``scenarios``
    in ``dtype``, quick horizons, no diagnosis (cached: the meta-tests ask for it twice)."""
    return check_port(
        torch_factory(cls, dtype), "setadam", None, list(scenarios), quick=True, dtype=dtype,
        name=cls.__name__, diagnose=False,
    )  # fmt: skip
