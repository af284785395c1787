"""A sharded SET-Adam as an outside implementer writes it: its own state names and container.

Written from the mathematics (ALGORITHM.md) for DTensor parameters, sharing nothing with
:mod:`.base`: the moments are kept in ``self.buffers[id(p)] = {"mu": ..., "nu": ...}`` (DTensors
made by ``torch.zeros_like(p)``, so laid out as the parameter), the step count in one int
attribute ``self.iterations`` (Keras style), no ``exp_avg``/``exp_avg_sq``/``step`` anywhere and
no stage record. Per param group and step, every rank gathers all ranks' local
$[\\sum v, \\sum v^2, \\min v]$ in one ``all_gather_into_tensor`` and reduces them (a replicated
parameter is whole on every rank and is not summed).

:class:`OutsiderSETAdam` is the control, :class:`OutsiderLocalBuffers` another (its moments
plain tensors of the local shard's size, ``torch.zeros_like(p.to_local())``, as a port written
for the shards alone keeps them); :class:`OutsiderLocalNorms` plants the classic bug of
layer-wise optimizers under sharding (llm.c PR 524, DeepSpeed issue 490): the layer statistics,
and the layer size $d$, of the local shard only, never reduced across ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Replicate


def _shard(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _whole_here(p: Tensor) -> bool:
    return not isinstance(p, DTensor) or all(isinstance(q, Replicate) for q in p.placements)


class OutsiderSETAdam(torch.optim.Optimizer):
    """Correct sharded SET-Adam in an outside naming (the control)."""

    LOCAL_ONLY = False
    PLAIN_BUFFERS = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        tau: float = 0.5,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, tau=tau,
            decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)
        self.iterations = 0
        self.buffers: dict[int, dict[str, Tensor]] = {}

    def _layer_stats(
        self, ps: list[Tensor], nus: list[Tensor]
    ) -> list[tuple[float, float, float, int]]:
        """Per parameter (sum v, sum v^2, min v, d) over the whole layer."""
        local = torch.tensor(
            [[float(x.sum()), float((x * x).sum()), float(x.min()) if x.numel() else math.inf]
             for x in (n.double() for n in nus)],
            dtype=torch.float64,
        )  # fmt: skip
        if self.LOCAL_ONLY:  # the planted bug: this shard's statistics and size
            return [(*map(float, row), _shard(p).numel()) for p, row in zip(ps, local)]
        mesh = next((p.device_mesh for p in ps if isinstance(p, DTensor)), None)
        if mesh is None:
            return [(*map(float, row), p.numel()) for p, row in zip(ps, local)]
        pg = mesh.get_group(0)
        world = dist.get_world_size(pg)
        every = torch.empty(world * local.numel(), dtype=torch.float64)
        dist.all_gather_into_tensor(every, local.reshape(-1).contiguous(), group=pg)
        every = every.view(world, *local.shape)
        out = []
        for j, p in enumerate(ps):
            if _whole_here(p):
                s1, s2, lo = (float(x) for x in local[j])
            else:
                s1, s2 = float(every[:, j, 0].sum()), float(every[:, j, 1].sum())
                lo = float(every[:, j, 2].min())
            out.append((s1, s2, lo, p.numel()))
        return out

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.iterations += 1
        t = self.iterations
        for group in self.param_groups:
            b1, b2 = group["betas"]
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            nus = []
            for p in ps:
                like = _shard(p) if self.PLAIN_BUFFERS else p
                buf = self.buffers.setdefault(
                    id(p), {"mu": torch.zeros_like(like), "nu": torch.zeros_like(like)}
                )
                g = _shard(p.grad) * (-1.0 if group["maximize"] else 1.0)
                if group["weight_decay"] and not group["decoupled_weight_decay"]:
                    g = g + group["weight_decay"] * _shard(p)
                _shard(buf["mu"]).mul_(b1).add_(g, alpha=1 - b1)
                _shard(buf["nu"]).mul_(b2).addcmul_(g, g, value=1 - b2)
                nus.append(_shard(buf["nu"]))
            for p, nu, (s1, s2, lo, d) in zip(ps, nus, self._layer_stats(ps, nus)):
                c = 1.0 if s2 == 0 or d == 0 else min(1.0, max(1.0 / d, s1 * s1 / (d * s2)))
                bc2 = 1 - b2**t
                w = torch.sqrt(c * nu / bc2 + group["eps"])
                w_lo = math.sqrt(c * lo / bc2 + group["eps"]) if math.isfinite(lo) else 0.0
                x = _shard(p)
                if group["weight_decay"] and group["decoupled_weight_decay"]:
                    x.mul_(1 - group["lr"] * group["weight_decay"])
                mu = _shard(self.buffers[id(p)]["mu"])
                x.addcdiv_(mu, w - group["tau"] * w_lo, value=-group["lr"] / (1 - b1**t))
        return loss


class OutsiderLocalNorms(OutsiderSETAdam):
    """Layer statistics of the local shard, never reduced (llm.c PR 524, DeepSpeed issue 490)."""

    LOCAL_ONLY = True


class OutsiderLocalBuffers(OutsiderSETAdam):
    """Correct; its moments are plain tensors of the local shard (a second control)."""

    PLAIN_BUFFERS = True
