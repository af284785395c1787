"""TensorFlow-style Adam ports as an outside implementer writes them (not the reference's code).

Keras / TF form: $\\alpha_t = \\text{lr}\\sqrt{1-\\beta_2^t}/(1-\\beta_1^t)$, eps added to the unscaled
$\\sqrt v$, moments in Keras' own names (``momentums``, ``velocities``) on the optimizer, weight
decay decoupled in a pass of its own before the update (keras 3's ``_apply_weight_decay``).
Correct by construction; the meta-tests check that it passes as ``eps_mode="tf"`` and that
``torch.optim.Adam`` (eps on $\\sqrt{\\hat v}$) does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class TFStyleAdam(torch.optim.Optimizer):
    """Adam as tf.keras writes it: ``var -= alpha * m / (sqrt(v) + epsilon)``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )
        self.amsgrad = amsgrad
        self.iterations = 0
        self.momentums: dict[int, torch.Tensor] = {}
        self.velocities: dict[int, torch.Tensor] = {}
        self.velocity_hats: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        self.iterations += 1
        t = self.iterations
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            for p in group["params"]:
                if p.grad is None:
                    continue
                key = id(p)
                if key not in self.momentums:
                    self.momentums[key] = torch.zeros_like(p)
                    self.velocities[key] = torch.zeros_like(p)
                    self.velocity_hats[key] = torch.zeros_like(p)
                m, v = self.momentums[key], self.velocities[key]
                if wd:
                    p.mul_(1 - wd * lr)
                g = p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).add_(g * g, alpha=1 - b2)
                if self.amsgrad:
                    vh = self.velocity_hats[key]
                    torch.maximum(vh, v, out=vh)
                    v = vh
                p.sub_(m * alpha / v.sqrt().add_(eps))
