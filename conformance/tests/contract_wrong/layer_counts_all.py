"""A SET-Adam whose layer statistics run over every parameter of the layer, gradient or not.

``layer="group"`` makes a param group one layer; the statistics (the sums of v and v**2, the
number of coordinates d, the minimum of w) are taken over all the group's parameters, so a
frozen parameter (no gradient, v = 0) still counts: d is too large and min w drops to
sqrt(eps). Right with one layer per tensor (every older scenario); the ``sparse_layers`` family
puts a parameter without gradient in a layer of two tensors.

Two neighbours, the same bug where a skipped parameter never had a gradient (its v is 0 from
the start), told apart only once a skipped parameter has a v of its own:

- ``ZeroFilledLayerSETAdam`` packs the layer into a zero-filled buffer and writes in the v of
  the parameters with a gradient: a skipped parameter counts as zeros, even with a stored v;
- ``DenseGradSETAdam`` takes a missing gradient as zeros and steps every parameter (a fused
  kernel wants every tensor): a skipped parameter decays its m and v and moves with its m.
"""

from __future__ import annotations

from typing import Any

import torch


class WholeLayerSETAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, tau: float = 0.5,
                 layer: str = "tensor") -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, tau=tau)
        super().__init__(params, {**defaults, "layer": layer})

    def _grad(self, p: torch.Tensor) -> torch.Tensor | None:
        return p.grad  # None: the parameter sits this step out

    def _layer_v(self, p: torch.Tensor) -> torch.Tensor:
        return self.state[p]["m2"] if p in self.state else torch.zeros_like(p)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            lr, (b1, b2), eps, tau = group["lr"], group["betas"], group["eps"], group["tau"]
            grads = {p: self._grad(p) for p in group["params"]}
            live = [p for p in group["params"] if grads[p] is not None]
            for p in live:
                s = self.state[p]
                if not s:
                    s.update(k=0, m1=torch.zeros_like(p), m2=torch.zeros_like(p))
                g = grads[p] + group["weight_decay"] * p
                s["k"] += 1
                s["m1"].mul_(b1).add_(g, alpha=1 - b1)
                s["m2"].mul_(b2).addcmul_(g, g, value=1 - b2)
            if group["layer"] == "group":
                # the bug: every parameter of the group, with or without gradient
                layers = [list(group["params"])]
            else:
                layers = [[p] for p in live]
            for members in layers:
                v = torch.cat([self._layer_v(p).reshape(-1) for p in members])
                if v.numel() == 0:
                    continue
                s2 = (v * v).sum()
                c = v.sum() ** 2 / (v.numel() * s2) if s2 > 0 else torch.ones((), dtype=v.dtype)
                for p in members:
                    if grads[p] is None:
                        continue
                    s = self.state[p]
                    bc2 = 1 - b2 ** s["k"]
                    w_min = torch.sqrt(c * v.min() / bc2 + eps)
                    w = torch.sqrt(c * s["m2"] / bc2 + eps)
                    p.sub_(lr / (1 - b1 ** s["k"]) * s["m1"] / (w - tau * w_min))


class ZeroFilledLayerSETAdam(WholeLayerSETAdam):
    def _layer_v(self, p: torch.Tensor) -> torch.Tensor:
        # the layer buffer starts at zero; only the parameters with a gradient write their v
        return self.state[p]["m2"] if p.grad is not None else torch.zeros_like(p)


class DenseGradSETAdam(WholeLayerSETAdam):
    def _grad(self, p: torch.Tensor) -> torch.Tensor | None:
        return p.grad if p.grad is not None else torch.zeros_like(p)
