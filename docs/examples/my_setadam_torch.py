"""A small, self-contained SET-Adam for PyTorch, written from the mathematics.

This is the port used in docs/src/guide/verify-your-port.md. It follows the torch.optim
constructor convention, keeps one layer per parameter tensor, and evaluates c_l with the
overflow-safe scaling of docs/src/numerics/overflow.md. It never imports setadam_ref.
"""

from __future__ import annotations

import torch


class MySETAdam(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, tau=0.5):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, tau=tau)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            wd, tau = group["weight_decay"], group["tau"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = int(state["step"].item())
                if p.numel() == 0:
                    continue
                g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)  # l2 weight decay
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                # (S) down-scaling: c = (sum v)^2 / (d sum v^2), evaluated on v / max(v)
                v_max = v.max()
                if v_max > 0:
                    u = v / v_max
                    c = u.sum() ** 2 / (u.numel() * (u * u).sum())
                else:
                    c = torch.ones((), dtype=v.dtype, device=v.device)  # all-zero layer
                # (E) epsilon-embedding, eps inside the square root
                w = torch.sqrt(c * v / (1 - b2**t) + eps)
                # (T) down-translating by a fraction tau of the layer's minimum
                wt = w - tau * w.min()
                p.addcdiv_(m, wt, value=-lr / (1 - b1**t))
        return loss
