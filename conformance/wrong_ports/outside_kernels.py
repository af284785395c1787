"""Planted torch SET-Adam ports written as a fast-kernel author would: chunks and bounded launches.

The author flattens every parameter, runs the elementwise passes in blocks of ``CHUNK`` = 2^16
coordinates, reduces each layer for the SET-Adam statistics, and hands the tensors to a launcher
that takes at most ``MAX_TENSORS`` = 256 tensors per launch. The state lives under the author's
own names: ``self.state[p]["moment1"]``, ``["moment2"]`` and the counter ``["iteration"]``.

``ChunkedSETAdam`` is the control (correct, the contract families included: a parameter without
gradient keeps its own count). ``GroupCountSETAdam`` keeps one counter per param group instead
(``group["iteration"]``, one t per launch as a fused multi-tensor kernel takes it): right in
every family but ``sparse``, where a parameter skipped at some step is bias-corrected with its
group's count (the per-array convention of ``docs/src/conventions.md``). Each planted port gets
one thing wrong that only a scale family exposes (every layer of the older scenarios is smaller
than a chunk and every group has fewer than 256 tensors):

- ``ChunkStatsSETAdam``: cos^2 and the minimum of w reduced per chunk instead of per layer;
- ``ChunkTailSETAdam``: the block grid is ``max(1, n // CHUNK)`` (floor, not ceiling), so the
  coordinates past the last full chunk are never updated;
- ``OneLaunchSETAdam``: only the first launch of 256 tensors runs; later tensors never move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

CHUNK = 2**16
MAX_TENSORS = 256


class ChunkedSETAdam(torch.optim.Optimizer):
    """SET-Adam through chunked elementwise passes and bounded multi-tensor launches."""

    STATS_PER_CHUNK = False
    FLOOR_GRID = False
    ONE_LAUNCH = False
    GROUP_COUNTER = False

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

    def _blocks(self, n: int) -> list[tuple[int, int]]:
        """The block grid of a flat tensor of ``n`` coordinates."""
        if self.FLOOR_GRID:
            count = max(1, n // CHUNK)  # the planted mistake: floor division drops the tail
        else:
            count = max(1, -(-n // CHUNK))
        return [(i * CHUNK, min((i + 1) * CHUNK, n)) for i in range(count)]

    def _stat_spans(self, n: int) -> list[tuple[int, int]]:
        if self.STATS_PER_CHUNK:  # the planted mistake: each block reduces on its own
            return [(a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]
        return [(0, n)]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            t = None
            if self.GROUP_COUNTER:  # one t for the group's launches
                t = group["iteration"] = group.get("iteration", 0) + 1
            launches = [params[i : i + MAX_TENSORS] for i in range(0, len(params), MAX_TENSORS)]
            if self.ONE_LAUNCH:
                launches = launches[:1]  # the planted mistake: the launcher's bound is the list
            for batch in launches:
                self._launch(group, batch, t)
        return loss

    def _launch(self, group: dict[str, Any], params: list[Tensor], t: int | None) -> None:
        b1, b2 = group["betas"]
        for p in params:
            st = self.state[p]
            if not st:
                st["moment1"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["moment2"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["iteration"] = 0
            st["iteration"] += 1
            k = st["iteration"] if t is None else t
            bc1, bc2 = 1.0 - b1**k, 1.0 - b2**k
            x, m, v = p.view(-1), st["moment1"].view(-1), st["moment2"].view(-1)
            g = p.grad.reshape(-1)  # type: ignore[union-attr]
            n = x.numel()
            if n == 0:
                continue
            if group["maximize"]:
                g = -g
            if group["weight_decay"] and not group["decoupled_weight_decay"]:
                g = g + group["weight_decay"] * x
            for a, b in self._blocks(n):
                m[a:b].mul_(b1).add_(g[a:b], alpha=1 - b1)
                v[a:b].mul_(b2).addcmul_(g[a:b], g[a:b], value=1 - b2)
            w = torch.empty_like(v)
            for a, b in self._stat_spans(n):
                vs = v[a:b]
                ms = (vs * vs).mean()
                c = torch.ones((), dtype=v.dtype) if float(ms) == 0.0 else vs.mean() ** 2 / ms
                wl = torch.sqrt(c * vs / bc2 + group["eps"])
                w[a:b] = wl - group["tau"] * wl.min()
            for a, b in self._blocks(n):
                if group["weight_decay"] and group["decoupled_weight_decay"]:
                    x[a:b].mul_(1 - group["lr"] * group["weight_decay"])
                x[a:b].sub_(group["lr"] / bc1 * m[a:b] / w[a:b])


class ChunkStatsSETAdam(ChunkedSETAdam):
    STATS_PER_CHUNK = True


class ChunkTailSETAdam(ChunkedSETAdam):
    FLOOR_GRID = True


class OneLaunchSETAdam(ChunkedSETAdam):
    ONE_LAUNCH = True


class GroupCountSETAdam(ChunkedSETAdam):
    GROUP_COUNTER = True


#: planted port -> the scale family (scenario) that exposes it
PLANTED: dict[str, str] = {
    "ChunkStatsSETAdam": "big_layers",
    "ChunkTailSETAdam": "big_layers",
    "OneLaunchSETAdam": "many_tensors",
}
