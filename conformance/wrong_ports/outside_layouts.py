"""A planted torch SET-Adam port whose fast path reads tensors in storage order.

The author wants one flat buffer per tensor without a copy, so every tensor is read through its
storage: ``t.as_strided((n,), (1,), t.storage_offset())``, the coordinates in memory order (for a
contiguous tensor the logical order). Parameters, gradients and the moments (made with
``zeros_like``, so in the parameter's layout) are all read that way, consistently: the moments
and the layer statistics are right whatever the layout. The new parameters are computed out of
place and written back with ``p.copy_(new.view(p.shape))``, which reads ``new`` in *logical*
order: for a transposed leaf or a ``channels_last`` weight the coordinates land permuted. Every
older scenario's parameters are contiguous, so only the ``layouts`` family shows it
(``StorageOrderSETAdam``); ``StorageOrderFixedSETAdam`` writes back through the storage view and
is the control.

State: ``self.state[p]["mom"]`` and ``["sq"]``, the counter ``group["k"]`` (the author's names).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


def storage_flat(t: Tensor) -> Tensor:
    """The coordinates of a dense tensor in memory order, as a view (no copy)."""
    if t.is_contiguous():  # memory order is the logical order
        return t.view(-1)
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


class StorageOrderFixedSETAdam(torch.optim.Optimizer):
    """SET-Adam on storage-order flat views, written back through the same view (correct)."""

    LOGICAL_WRITE_BACK = False

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

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                group["k"] = group.get("k", 0) + 1
                for p in params:
                    self._one(group, p, group["k"])
        return loss

    def _corrections(self, b1: float, b2: float, k: int) -> tuple[float, float]:
        return 1 - b1**k, 1 - b2**k

    def _one(self, group: dict[str, Any], p: Tensor, k: int) -> None:
        b1, b2 = group["betas"]
        st = self.state[p]
        if not st:
            st["mom"] = torch.zeros_like(p)  # preserve_format: the parameter's layout
            st["sq"] = torch.zeros_like(p)
        if p.numel() == 0:
            return
        x, m, v = storage_flat(p), storage_flat(st["mom"]), storage_flat(st["sq"])
        g = storage_flat(p.grad)  # type: ignore[arg-type]
        if group["maximize"]:
            g = -g
        if group["weight_decay"] and not group["decoupled_weight_decay"]:
            g = g + group["weight_decay"] * x
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        ms = (v * v).mean()
        c = torch.ones((), dtype=v.dtype) if float(ms) == 0.0 else v.mean() ** 2 / ms
        bc1, bc2 = self._corrections(b1, b2, k)
        w = torch.sqrt(c * v / bc2 + group["eps"])
        w = w - group["tau"] * w.min()
        new = x
        if group["weight_decay"] and group["decoupled_weight_decay"]:
            new = new * (1 - group["lr"] * group["weight_decay"])
        new = new - group["lr"] / bc1 * m / w
        if self.LOGICAL_WRITE_BACK:
            p.copy_(new.view(p.shape))  # the planted mistake: new is in memory order
        else:
            x.copy_(new)


class StorageOrderSETAdam(StorageOrderFixedSETAdam):
    """Writes the storage-order result back in logical order (the planted layout bug)."""

    LOGICAL_WRITE_BACK = True


#: planted port -> the family that exposes it
PLANTED: dict[str, str] = {"StorageOrderSETAdam": "layouts"}
