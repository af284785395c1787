"""Sharded optimizers whose rank 1 misbehaves in ``step()``: it raises, hangs, or ends its process.

The other ranks are then left waiting in the step's collective; a sharded check must still end
with a verdict, every rank stopped. Rank 1 misbehaves from its fourth ``step()`` on (the first
ones are the two steps of the harness's probe of the state layout and the step that creates
the state of the first re-synced step before it is overwritten), so it misbehaves in the
first re-synced ``step()`` of a running scenario.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch.distributed as dist

from .base import ShardedSETAdam


class _RankOne(ShardedSETAdam):
    calls = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        type(self).calls += 1
        if dist.get_rank() == 1 and type(self).calls >= 4:
            self.misbehave()
        return super().step(closure)

    def misbehave(self) -> None:
        raise NotImplementedError


class RankOneRaises(_RankOne):
    def misbehave(self) -> None:
        raise RuntimeError("rank 1 gave up")


class RankOneHangs(_RankOne):
    def misbehave(self) -> None:
        time.sleep(3600)


class RankOneDies(_RankOne):
    def misbehave(self) -> None:
        os._exit(7)
