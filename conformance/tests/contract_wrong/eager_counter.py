"""An Adam that advances the step count of every parameter it has seen, gradient or not.

The counters are advanced in one sweep over the group's state before the update loop skips the
parameters without a gradient (a "count the optimizer's steps" reading of ``t``): a parameter
that had no gradient at some steps is then bias-corrected with too large a count. Right whenever
every parameter has a gradient at every step; the ``sparse`` family leaves some without.
"""

from __future__ import annotations

from typing import Any

import torch


class EagerCountAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p in self.state:
                    self.state[p]["n"] += 1  # the bug: before the test for a gradient
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st.update(n=1, a=torch.zeros_like(p), b=torch.zeros_like(p))
                g = p.grad + wd * p if wd else p.grad
                st["a"].lerp_(g, 1 - b1)
                st["b"].mul_(b2).addcmul_(g, g, value=1 - b2)
                t = st["n"]
                den = (st["b"] / (1 - b2**t)).sqrt() + eps
                p.addcdiv_(st["a"], den, value=-lr / (1 - b1**t))
