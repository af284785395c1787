"""The sharded tests' rank pool: :mod:`conformance.adapters.rank_pool` (where ``check --nprocs``
takes its ranks from), re-exported under the names the tests use."""

from __future__ import annotations

from conformance.adapters.rank_pool import (
    PooledPort,
    PoolTimeout,
    RankError,
    RankLost,
    RankPool,
    RanksHung,
    load,
    setadam_kwargs,
    shared,
)

__all__ = [
    "PoolTimeout", "PooledPort", "RankError", "RankLost", "RankPool", "RanksHung", "load",
    "setadam_kwargs", "shared",
]  # fmt: skip
