"""Correct Adam optimizers with quirks a verdict must not overstate.

``HiddenStateAdam`` keeps its moments under its own names (``mu``, ``nu``), so the harness cannot
re-sync it: only free-running comparisons remain, which on a closed loop are reported, not judged.
"""

from __future__ import annotations

from typing import Any

import torch


class HiddenStateAdam(torch.optim.Optimizer):
    """torch.optim.Adam's arithmetic (eps outside the root), state under names of its own."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                st = self.state[p]
                if not st:
                    st["t"], st["mu"], st["nu"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["t"] += 1
                st["mu"].lerp_(g, 1 - b1)
                st["nu"].mul_(b2).addcmul_(g, g, value=1 - b2)
                bc1, bc2 = 1 - b1 ** st["t"], 1 - b2 ** st["t"]
                denom = (st["nu"].sqrt() / bc2**0.5).add_(group["eps"])
                p.addcdiv_(st["mu"], denom, value=-group["lr"] / bc1)
        return None
