"""Planted torch Adam ports whose every step is off by a tiny relative bias, outsider style.

Written as someone porting Adam by hand would (state ``"mean"``, ``"meansq"`` and an int
``"count"`` per parameter; step size and bias corrections as Python floats), each with one
systematic mistake far below the per-coordinate budget; the statistical verdict
(:mod:`conformance.systematic`) must catch those above its floor and pass the one inside it:

- ``LrPlus8uAdam``: ``lr * (1 + 8u)``, u the unit roundoff of the parameters' dtype;
- ``DenomBiasAdam``: the denominator multiplied by ``1 + 1e-6`` (a relative bias of the step of
  about -1e-6);
- ``DenomBias1e14Adam``: the same with ``1 + 1e-14`` (for float64);
- ``InsideFloorAdam``: the denominator multiplied by ``1 + 2u`` of float32 (1.2e-7), inside
  the float32 floor of legitimately rounded scalars;
- ``Float32CorrectionsAdam``: bias corrections kept in float32 whatever the parameters' dtype
  (pytorch_optimizer's QHAdam does so with its Adam-equivalent defaults);
- ``HandAdam``: the control, no mistake.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class HandAdam(torch.optim.Optimizer):
    """Adam as a hand port writes it; subclasses plant one systematic mistake."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def step_size(self, lr: float, dtype: torch.dtype) -> float:
        return lr

    def corrections(self, count: int, b1: float, b2: float) -> tuple[float, float]:
        return 1.0 - b1**count, 1.0 - b2**count

    def denominator(self, denom: Tensor) -> Tensor:
        return denom

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                mem = self.state[p]
                if not mem:
                    mem["count"] = 0
                    mem["mean"] = torch.zeros_like(p)
                    mem["meansq"] = torch.zeros_like(p)
                mem["count"] += 1
                if wd and not group["decoupled_weight_decay"]:
                    g = g + wd * p
                mem["mean"].mul_(b1).add_(g, alpha=1 - b1)
                mem["meansq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                c1, c2 = self.corrections(mem["count"], b1, b2)
                denom = (mem["meansq"].sqrt() / math.sqrt(c2)).add_(group["eps"])
                denom = self.denominator(denom)
                if wd and group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * wd)
                p.addcdiv_(mem["mean"], denom, value=-self.step_size(lr, p.dtype) / c1)
        return loss


class LrPlus8uAdam(HandAdam):
    """The learning rate off by 8 unit roundoffs of the parameters' dtype."""

    def step_size(self, lr: float, dtype: torch.dtype) -> float:
        return lr * (1 + 8 * torch.finfo(dtype).eps / 2)


class DenomBiasAdam(HandAdam):
    """The denominator off by a relative 1e-6 (e.g. a constant folded in once too often)."""

    BIAS = 1e-6

    def denominator(self, denom: Tensor) -> Tensor:
        return denom * (1 + self.BIAS)


class DenomBias1e14Adam(DenomBiasAdam):
    """The denominator off by a relative 1e-14: below the float64 per-coordinate budget."""

    BIAS = 1e-14


class InsideFloorAdam(HandAdam):
    """The denominator off by 2 float32 unit roundoffs: inside the float32 floor."""

    def denominator(self, denom: Tensor) -> Tensor:
        return denom * (1 + 2.0**-23)


class Float32CorrectionsAdam(HandAdam):
    """Bias corrections from float32 betas, kept in float32 (QHAdam's weights)."""

    def corrections(self, count: int, b1: float, b2: float) -> tuple[float, float]:
        f32 = torch.float32
        c1 = 1.0 - torch.tensor(b1, dtype=f32) ** count
        c2 = 1.0 - torch.tensor(b2, dtype=f32) ** count
        return float(c1), float(c2)
