"""Deliberately wrong sharded SET-Adams: the classic bugs of layer-wise optimizers under sharding.

Each overrides one hook of :class:`~.base.ShardedSETAdam` the way an implementer plausibly
would get it wrong; :data:`conformance.tests.sharded_wrong.PLANTED` says where the harness must
catch each one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor

from .base import ShardedSETAdam, _gather, local, replicated


class LocalStats(ShardedSETAdam):
    """llm.c PR 524: the layer statistics of the local shard only (no collective at all)."""

    def _reduce(self, ps: list[Tensor], stats: Tensor) -> Tensor:
        return stats


class PaddedStats(ShardedSETAdam):
    """Uneven shards padded with zeros to ``ceil(n / N)`` rows (to gather equal sizes), and the
    padding counted as data: $d$ is the padded size and a padded shard's minimum is 0."""

    def _padded_rows(self, p: Tensor) -> int:
        if not isinstance(p, DTensor) or p.dim() == 0 or replicated(p):
            return p.shape[0] if p.dim() else 1
        world = p.device_mesh.size()
        return -(-p.shape[0] // world)

    def _local_stats(self, p: Tensor, v: Tensor) -> list[float]:
        s1, s2, vmin = super()._local_stats(p, v)
        if p.dim() and local(p).shape[0] < self._padded_rows(p):
            vmin = 0.0
        return [s1, s2, vmin]

    def _layer_size(self, p: Tensor) -> int:
        if not isinstance(p, DTensor) or p.dim() == 0 or replicated(p):
            return p.numel()
        return self._padded_rows(p) * p.device_mesh.size() * (p.numel() // max(p.shape[0], 1))


class MaxForSums(ShardedSETAdam):
    """A wrong reduce op: the sums reduced with MAX (the min correctly with MIN)."""

    def _reduce(self, ps: list[Tensor], stats: Tensor) -> Tensor:
        pg = self._group_of(ps)
        if pg is None:
            return stats
        world = dist.get_world_size(pg)
        out = torch.empty(world * stats.numel(), dtype=stats.dtype)
        _gather(out, stats.reshape(-1).contiguous(), group=pg)
        every = out.view(world, *stats.shape)
        return torch.stack([every[:, 0].amax(0), every[:, 1].amax(0), every[:, 2].amin(0)])


class SumForMin(ShardedSETAdam):
    """A wrong reduce op: the minimum reduced with SUM (the sums correctly)."""

    def _reduce(self, ps: list[Tensor], stats: Tensor) -> Tensor:
        pg = self._group_of(ps)
        if pg is None:
            return stats
        world = dist.get_world_size(pg)
        out = torch.empty(world * stats.numel(), dtype=stats.dtype)
        _gather(out, stats.reshape(-1).contiguous(), group=pg)
        every = out.view(world, *stats.shape)
        total = every.sum(0)
        rep = torch.tensor([replicated(p) for p in ps])
        return torch.where(rep, stats, total)


class LocalMin(ShardedSETAdam):
    """The sums reduced across ranks, the minimum of the local shard kept."""

    def _reduce(self, ps: list[Tensor], stats: Tensor) -> Tensor:
        total = super()._reduce(ps, stats)
        return torch.stack([total[0], total[1], torch.where(stats[2].isinf(), total[2], stats[2])])


class SkipZeroShardStep(ShardedSETAdam):
    """A step counter that drifts between ranks: a rank whose gradient shard is all zero skips
    counting the step (an "optimisation" for frozen rows), so its bias corrections lag."""

    def _count(self, state: dict[str, Any], g: Tensor) -> int:
        if g.numel() == 0 or bool(g.abs().amax() > 0):
            state["step"] += 1
        return round(float(state["step"]))


class CollectivePerLayer(ShardedSETAdam):
    """Numerically right, but three all-reduces per layer (sum, sum of squares, min) instead of
    one collective per param group."""

    def _reduce(self, ps: list[Tensor], stats: Tensor) -> Tensor:
        pg = self._group_of(ps)
        if pg is None:
            return stats
        out = stats.clone()
        for j, p in enumerate(ps):
            if replicated(p):
                continue
            for row, op in ((0, dist.ReduceOp.SUM), (1, dist.ReduceOp.SUM), (2, dist.ReduceOp.MIN)):
                x = out[row, j : j + 1].clone()
                dist.all_reduce(x, op=op, group=pg)
                out[row, j] = x[0]
        return out


class MeanPartials(ShardedSETAdam):
    """Partials sent as means times counts (to keep the sums small): an empty shard's mean is
    0/0 = NaN, NaN times its count of 0 is still NaN, and the clamp ``max(1/d, NaN)`` quietly
    turns the layer's NaN $c$ into $1/d$."""

    def _local_stats(self, p: Tensor, v: Tensor) -> list[float]:
        x = v.double()
        n = x.numel()
        mean = float(x.mean()) if n else math.nan
        mean2 = float((x * x).mean()) if n else math.nan
        vmin = float(x.min()) if n else math.inf
        return [mean * n, mean2 * n, vmin]
