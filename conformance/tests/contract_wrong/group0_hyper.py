"""An Adam whose step reads every hyperparameter from the first param group.

A "fast path" that hoists the group loop's constants out of it: lr, betas, eps and weight decay
are taken from ``param_groups[0]`` for every group. Right whenever there is one group (every
dense scenario); the ``groups`` family gives its groups their own lr, eps and weight decay.
"""

from __future__ import annotations

from typing import Any

import torch


class HoistedAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        h = self.param_groups[0]  # the bug: one group's constants for all
        lr, (b1, b2), eps, wd = h["lr"], h["betas"], h["eps"], h["weight_decay"]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s["count"] = 0
                    s["mom"] = torch.zeros_like(p)
                    s["sq"] = torch.zeros_like(p)
                g = p.grad + wd * p if wd else p.grad
                s["count"] += 1
                s["mom"].lerp_(g, 1 - b1)
                s["sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                k = s["count"]
                den = (s["sq"] / (1 - b2**k)).sqrt() + eps
                p.addcdiv_(s["mom"], den, value=-lr / (1 - b1**k))
