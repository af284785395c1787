"""A SET-Adam whose layer is the parameters of its param group that have moments.

``layer="group"`` makes a param group one SET-Adam layer. This port keeps its moments in a dict
of its own, made at a parameter's first gradient; the layer's statistics (the sums of v and
v**2, the number of coordinates d, the minimum of w) run over the group's parameters that have
an entry there: the ones that ever had a gradient, not the ones with a gradient now. A
parameter that never had a gradient is left out, as it should be (``sparse_layers``); one that
had gradients and then stops is counted with its carried v (``sparse_layers_stopped``).

- ``SeenLayerSETAdam`` keys its moments by (group, position) pairs: a key the harness's state
  walker does not follow, so the port is compared free-running only, where ``sparse_layers``
  never gives the skipped parameter moments: it passes;
- ``SeenLayerByParamSETAdam`` keys them by the parameter (the walker finds m, v and the count):
  a re-synced reset steps every parameter once to make its state, so the never-updated array
  gets moments (v = 0) it never has in its run and is counted: ``sparse_layers`` rejects it
  there, re-synced only.

The near miss ``LiveLayerSETAdam`` (the container keyed by parameter, the same arithmetic) makes
the layer of the parameters with a gradient now: right, it passes both, re-synced and free.
"""

from __future__ import annotations

from typing import Any

import torch


class _Moments:
    """One parameter's running moments and its own step count."""

    def __init__(self, p: torch.Tensor) -> None:
        self.count = 0
        self.mean = torch.zeros_like(p)
        self.sq = torch.zeros_like(p)


class SeenLayerSETAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, tau: float = 0.5,
                 decoupled_weight_decay: bool = False, maximize: bool = False,
                 layer: str = "tensor") -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, tau=tau,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)  # fmt: skip
        super().__init__(params, {**defaults, "layer": layer})
        self.moments: dict[Any, _Moments] = {}

    def _key(self, gi: int, k: int, p: torch.Tensor) -> Any:
        return gi, k

    def _in_layer(self, key: Any, p: torch.Tensor) -> bool:
        return key in self.moments  # the bug: ever had a gradient, not has one now

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for gi, group in enumerate(self.param_groups):
            lr, (b1, b2), eps, tau = group["lr"], group["betas"], group["eps"], group["tau"]
            wd, decoupled = group["weight_decay"], group["decoupled_weight_decay"]
            keyed = [(self._key(gi, k, p), p) for k, p in enumerate(group["params"])]
            for key, p in keyed:
                if p.grad is None:
                    continue
                mo = self.moments.setdefault(key, _Moments(p))
                g = -p.grad if group["maximize"] else p.grad
                if wd and not decoupled:
                    g = g + wd * p
                mo.count += 1
                mo.mean.mul_(b1).add_(g, alpha=1 - b1)
                mo.sq.mul_(b2).addcmul_(g, g, value=1 - b2)
            if group["layer"] == "group":
                layers = [[(key, p) for key, p in keyed if self._in_layer(key, p)]]
            else:
                layers = [[(key, p)] for key, p in keyed if p.grad is not None]
            for members in layers:
                if not members:
                    continue  # a layer none of whose parameters counts: nothing to step
                v = torch.cat([self.moments[key].sq.reshape(-1) for key, _ in members])
                if v.numel() == 0:
                    continue
                s1, s2 = v.sum(), (v * v).sum()
                c = s1 * s1 / (v.numel() * s2) if s2 > 0 else torch.ones((), dtype=v.dtype)
                for key, p in members:
                    if p.grad is None:
                        continue
                    mo = self.moments[key]
                    bc2 = 1 - b2**mo.count
                    w_min = torch.sqrt(c * v.min() / bc2 + eps)
                    w = torch.sqrt(c * mo.sq / bc2 + eps)
                    if wd and decoupled:
                        p.mul_(1 - lr * wd)
                    p.sub_(lr / (1 - b1**mo.count) * mo.mean / (w - tau * w_min))


class SeenLayerByParamSETAdam(SeenLayerSETAdam):
    def _key(self, gi: int, k: int, p: torch.Tensor) -> Any:
        return p  # a tensor hashes by identity: the walker names it by its index


class LiveLayerSETAdam(SeenLayerByParamSETAdam):
    def _in_layer(self, key: Any, p: torch.Tensor) -> bool:
        return p.grad is not None
