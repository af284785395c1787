"""An Adam that reads each group's lr once, at construction.

The constants of every group are cached in a list when the optimizer is built (to save dict
look-ups in the step), so an lr scheduler's ``group["lr"] = ...`` is never seen. Right whenever
the lr is constant; the ``schedules`` family changes it before every step.
"""

from __future__ import annotations

from typing import Any

import torch


class CachedLRAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.rates = [float(g["lr"]) for g in self.param_groups]  # the bug: a copy, never updated
        self.slots: dict[Any, list[Any]] = {}  # per parameter: [steps, first moment, second]

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for lr, group in zip(self.rates, self.param_groups):
            (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                slot = self.slots.setdefault(p, [0, torch.zeros_like(p), torch.zeros_like(p)])
                g = p.grad + wd * p if wd else p.grad
                slot[0] += 1
                slot[1].mul_(b1).add_(g, alpha=1 - b1)
                slot[2].mul_(b2).add_(g * g, alpha=1 - b2)
                k = slot[0]
                den = slot[2].sqrt() / (1 - b2**k) ** 0.5 + eps
                p.sub_(lr / (1 - b1**k) * slot[1] / den)
