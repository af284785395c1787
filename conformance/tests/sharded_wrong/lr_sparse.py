r"""ZeRO-style torch Adams for DTensor parameters, wrong around the lr schedule or absent gradients.

Written as an outside implementer would (a ZeRO-1 port from the paper's formulas, nothing named
``exp_avg``): each rank keeps, per parameter, its own shard's moments as plain tensors
``state[p]["first"]``, ``state[p]["second"]`` (``p.to_local()``'s size; a replicated 0-d
parameter whole) and a Python int ``state[p]["k"]``, made at the parameter's first gradient.
Adam is elementwise, so the step is rank-local and issues no collective. With
$g \leftarrow g + \lambda\theta$ (l2 decay) or $\theta \leftarrow \theta(1-\text{lr}\,\lambda)$
(decoupled), $m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$,
$\theta \leftarrow \theta - \text{lr}\,\hat m/(\sqrt{\hat v}+\epsilon)$, $\hat m = m/(1-\beta_1^k)$,
$\hat v = v/(1-\beta_2^k)$, $k$ the parameter's own count.

- :class:`ZeroShardAdam`: correct (the near miss): the lr read from its group at every step (a
  float or a 0-d tensor), a parameter without gradient left alone, its count included;
- :class:`LrAtBuildZeroAdam`: planted, each group's lr read once in ``__init__`` (a scheduler
  writing ``group["lr"]`` later is not seen). Right at a constant lr;
- :class:`CountAllZeroAdam`: planted, at every step of a group each parameter that has state
  advances its count, with a gradient or not (the count kept "per rank step"): its bias
  corrections run ahead after a skipped step. Right where every parameter gets a gradient at
  every step or never (a frozen one never has state).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


class ZeroShardAdam(torch.optim.Optimizer):
    """Per parameter, this rank's shard of m and v (plain tensors) and an int count."""

    def __init__(self, params: Any, lr: Any = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False) -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay)  # fmt: skip
        super().__init__(params, defaults)

    def _lr(self, index: int, group: dict[str, Any]) -> float:
        return float(group["lr"])  # a 0-d tensor lr too

    def _count(self, group: dict[str, Any]) -> None:
        """Parameters without gradient at this step: left alone (nothing to do here)."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for index, group in enumerate(self.param_groups):
            lr = self._lr(index, group)
            (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
            self._count(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                x, g = _local(p), _local(p.grad)
                mine = self.state[p]
                if not mine:
                    mine.update(first=torch.zeros_like(x), second=torch.zeros_like(x), k=0)
                mine["k"] += 1
                k = mine["k"]
                if wd and group["decoupled_weight_decay"]:
                    x.mul_(1 - lr * wd)
                elif wd:
                    g = g + wd * x
                mine["first"].mul_(b1).add_(g, alpha=1 - b1)
                mine["second"].mul_(b2).addcmul_(g, g, value=1 - b2)
                den = mine["second"].div(1 - b2**k).sqrt_().add_(eps)
                x.addcdiv_(mine["first"], den, value=-lr / (1 - b1**k))


class LrAtBuildZeroAdam(ZeroShardAdam):
    """Each group's lr taken once, at construction."""

    def __init__(self, params: Any, **kw: Any) -> None:
        super().__init__(params, **kw)
        self._lr_at_build = [float(g["lr"]) for g in self.param_groups]

    def _lr(self, index: int, group: dict[str, Any]) -> float:
        return self._lr_at_build[index]


class CountAllZeroAdam(ZeroShardAdam):
    """Every parameter with state counts every step of its group, gradient or not."""

    def _count(self, group: dict[str, Any]) -> None:
        for p in group["params"]:
            mine = self.state[p] if p in self.state else None
            if mine and p.grad is None:
                mine["k"] += 1  # the rank's step, not the parameter's
