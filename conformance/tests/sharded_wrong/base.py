"""A DTensor-aware SET-Adam as an outside implementer would write it, one hook per sharding concern.

Written from the mathematics (ALGORITHM.md) for parameters that are DTensors sharded over a 1-D
mesh, sharing nothing with our port or the reference: per step and param group each rank
computes, per parameter, the local $\\sum v$, $\\sum v^2$ and $\\min v$ of its shard, the ranks
exchange them in one all-gather, and every rank sums and minimises what it
received (no exponent scaling: float64 sums, fine for the ranges of the sharding scenarios).
One layer per parameter. The planted bugs in :mod:`.ports` each override one hook of
:class:`ShardedSETAdam`, which is itself checked as the control that must be accepted.

State per parameter: ``step`` (float32 0-d CPU tensor), ``exp_avg``, ``exp_avg_sq`` (DTensors
like the parameter), as torch.optim, so the harness can re-sync it. With ``record_stages``,
``last_stages`` holds DTensors laid out as the parameters (``cos2``: 0-d tensors).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Replicate


def _gather(out: Tensor, x: Tensor, group: Any) -> None:
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(out, x, group=group)


def local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def replicated(p: Tensor) -> bool:
    return not isinstance(p, DTensor) or all(isinstance(q, Replicate) for q in p.placements)


class ShardedSETAdam(torch.optim.Optimizer):
    """Correct sharded SET-Adam (the control)."""

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
        self.record_stages = False
        self.last_stages: dict[str, list[Tensor]] | None = None

    # ------------------------------------------------------------------ hooks
    def _count(self, state: dict[str, Any], g: Tensor) -> int:
        state["step"] += 1
        return round(float(state["step"]))

    def _local_stats(self, p: Tensor, v: Tensor) -> list[float]:
        """[sum v, sum v^2, min v] of this rank's shard (min +inf when the shard is empty)."""
        x = v.double()
        vmin = float(x.min()) if x.numel() else math.inf
        return [float(x.sum()), float((x * x).sum()), vmin]

    def _layer_size(self, p: Tensor) -> int:
        return p.numel()

    def _group_of(self, ps: list[Tensor]) -> Any:
        meshes = [p.device_mesh for p in ps if isinstance(p, DTensor)]
        return meshes[0].get_group(0) if meshes else None

    def _reduce(self, ps: list[Tensor], stats: Tensor) -> Tensor:
        """(3, k) local stats of the group -> global ones: one all-gather, then sum and min."""
        pg = self._group_of(ps)
        if pg is None:
            return stats
        world = dist.get_world_size(pg)
        out = torch.empty(world * stats.numel(), dtype=stats.dtype)
        _gather(out, stats.reshape(-1).contiguous(), group=pg)
        every = out.view(world, *stats.shape)
        total = torch.stack([every[:, 0].sum(0), every[:, 1].sum(0), every[:, 2].amin(0)])
        rep = torch.tensor([replicated(p) for p in ps])
        return torch.where(rep, stats, total)  # a replicated tensor is complete on every rank

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rec: dict[str, list[Tensor]] = {
            k: []
            for k in ("down_scaling", "epsilon_embedding", "down_translating", "update", "cos2")
        }
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            ps = [p for p in group["params"] if p.grad is not None]
            moments: list[tuple[Tensor, Tensor, Tensor, int]] = []
            for p in ps:
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.0)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                g = local(p.grad)
                if group["maximize"]:
                    g = -g
                lp = local(p)
                if group["weight_decay"] and not group["decoupled_weight_decay"]:
                    g = g + group["weight_decay"] * lp
                m, v = local(st["exp_avg"]), local(st["exp_avg_sq"])
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                moments.append((lp, m, v, self._count(st, g)))
            if not ps:
                continue
            stats = torch.tensor(
                [self._local_stats(p, v) for p, (_, _, v, _) in zip(ps, moments)],
                dtype=torch.float64,
            ).T.contiguous()
            total = self._reduce(ps, stats)
            for j, (p, (lp, m, v, t)) in enumerate(zip(ps, moments)):
                d = self._layer_size(p)
                s1, s2, vmin = (float(x) for x in total[:, j])
                c = 1.0 if s2 == 0 else min(1.0, max(1.0 / d, s1 * s1 / (d * s2)))
                bc1, bc2 = 1 - beta1**t, 1 - beta2**t
                w = torch.sqrt(c * v / bc2 + group["eps"])
                wmin = math.sqrt(c * vmin / bc2 + group["eps"]) if math.isfinite(vmin) else 0.0
                wt = w - group["tau"] * wmin
                old = lp.detach().double().clone()
                if group["weight_decay"] and group["decoupled_weight_decay"]:
                    lp.mul_(1 - group["lr"] * group["weight_decay"])
                lp.addcdiv_(m, wt, value=-group["lr"] / bc1)
                if self.record_stages:
                    for key, x in (
                        ("down_scaling", c * v), ("epsilon_embedding", w),
                        ("down_translating", wt), ("update", lp.double() - old),
                    ):  # fmt: skip
                        rec[key].append(_like(x, p))
                    rec["cos2"].append(torch.tensor(c, dtype=torch.float64))
        self.last_stages = rec if self.record_stages else None
        return loss


def _like(x: Tensor, p: Tensor) -> Tensor:
    """``x`` (a local tensor) laid out as the DTensor ``p``."""
    if not isinstance(p, DTensor):
        return x
    return DTensor.from_local(
        x, p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride()
    )
