"""Deliberately wrong sharded SET-Adams for the meta-tests of sharded checks, and their control.

:data:`PLANTED` lists each port as data: its import path, the sharding scenario that exposes it,
the first stage (in the harness's computation order) at which a check that re-syncs the port
and reads its stages must see it differ, and the kind of failure. The ports are torch.optim
optimizers for DTensor parameters (:mod:`.base`, :mod:`.ports`), written from the mathematics;
nothing here is imported by ``conformance`` itself. :mod:`.lr_sparse` holds ZeRO-style Adams
wrong around the contract (an lr read once, a count advanced without gradient), checked by
``test_sharded_contract_planted.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Planted:
    """One planted port: ``stage`` None and ``kind`` "side_effect" for a bug with no numerical
    trace (the collective-count contract); ``must_accept`` for the control."""

    target: str
    scenario: str
    stage: str | None
    kind: str = "tolerance"
    must_accept: bool = False

    @property
    def attr(self) -> str:
        return self.target.rsplit(":", 1)[1]


_B = "conformance.tests.sharded_wrong.base:"
_P = "conformance.tests.sharded_wrong.ports:"

PLANTED: tuple[Planted, ...] = (
    Planted(_B + "ShardedSETAdam", "*", None, "", must_accept=True),
    Planted(_P + "LocalStats", "shard_even", "cos2"),
    Planted(_P + "PaddedStats", "shard_uneven", "cos2"),
    Planted(_P + "MaxForSums", "shard_even", "cos2"),
    Planted(_P + "SumForMin", "shard_even", "down_translating"),
    Planted(_P + "LocalMin", "shard_even", "down_translating"),
    Planted(_P + "SkipZeroShardStep", "shard_zero_rows", "epsilon_embedding"),
    Planted(_P + "CollectivePerLayer", "shard_even", None, "side_effect"),
    Planted(_P + "MeanPartials", "shard_fewer_rows", "cos2"),
)
