"""Deliberately wrong PyTorch Adam ports (and a correct control) for the Adam side of the
meta-tests: the harness must reject them and name the planted cause from ``ADAM_CATALOGUE``.

Written from the mathematics (torch.optim.Adam's conventions: eps outside the square root,
l2 weight decay, or decoupled with ``decoupled_weight_decay=True``), never from ``setadam_ref``.
Constructor: ``cls(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *,
decoupled_weight_decay=False, maximize=False)``; state ``"step"``, ``"exp_avg"``, ``"exp_avg_sq"``
as torch.optim. No amsgrad.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["AdamDecoupledWithoutLr", "AdamEpsInsideSqrt", "AdamNoBiasCorrection2", "StagedAdam"]


class StagedAdam(torch.optim.Optimizer):
    """Correct Adam (control): must be accepted."""

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
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _denom(self, v: Tensor, bc2: float, eps: float) -> Tensor:
        return (v / bc2).sqrt_().add_(eps)

    def _decay(self, p: Tensor, lr: float, wd: float) -> None:
        p.mul_(1.0 - lr * wd)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                if wd != 0 and not group["decoupled_weight_decay"]:
                    g = g + wd * p
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = round(float(state["step"]))
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                bc1 = 1.0 - beta1**t
                bc2 = -math.expm1(t * math.log1p(beta2 - 1.0))
                if wd != 0 and group["decoupled_weight_decay"]:
                    self._decay(p, lr, wd)
                p.addcdiv_(m, self._denom(v, bc2, eps), value=-lr / bc1)
        return loss


class AdamEpsInsideSqrt(StagedAdam):
    """Bug class: eps inside the square root, denom = sqrt(v / bc2 + eps) (optax's eps_root where
    torch's eps is meant). Stage: update (params), from step 1; large on tiny gradients.
    Catalogue: ``adam_eps_inside_sqrt``.
    """

    def _denom(self, v: Tensor, bc2: float, eps: float) -> Tensor:
        return (v / bc2).add_(eps).sqrt_()


class AdamNoBiasCorrection2(StagedAdam):
    """Bug class: v not bias-corrected, denom = sqrt(v) + eps. Stage: update (params), from step
    1. Catalogue: ``adam_no_bias_correction2``.
    """

    def _denom(self, v: Tensor, bc2: float, eps: float) -> Tensor:
        return v.sqrt().add_(eps)


class AdamDecoupledWithoutLr(StagedAdam):
    """Bug class: AdamW's decay without the lr factor, theta *= (1 - wd). Stage: update (params),
    from step 1, only with decoupled weight decay. Catalogue: ``adam_decoupled_without_lr``.
    """

    def _decay(self, p: Tensor, lr: float, wd: float) -> None:
        p.mul_(1.0 - wd)
