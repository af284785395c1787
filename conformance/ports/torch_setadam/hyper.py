r"""The hyperparameter record of one SET-Adam step, its validation, and the scalars it implies.

Every path (single-tensor, foreach, fused) takes one :class:`Hyper` instead of a long keyword
list. The scalars that depend on the step count $t$ are computed here and nowhere else:

$$
\text{step size} = -\frac{\eta}{1-\beta_1^t}, \qquad
\text{bias correction} = 1-\beta_2^t, \qquad
\text{decoupled decay factor} = 1-\eta\lambda .
$$

They are host floats today (the step counts are CPU tensors, as in ``torch.optim.Adam`` without
``capturable``). A tensor learning rate (LR schedulers that keep ``lr`` on the device) would change
these three methods and nothing in the paths' element-wise code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor


@dataclass(frozen=True)
class Hyper:
    r"""SET-Adam's hyperparameters for one parameter group.

    ``lr`` is $\eta$; ``beta1``, ``beta2`` are $\beta_1, \beta_2$; ``eps`` is $\epsilon$
    (inside the square root); ``tau`` is $\tau$; ``weight_decay`` is $\lambda$, coupled
    ($g \leftarrow g + \lambda\theta$) unless ``decoupled``
    ($\theta \leftarrow (1-\eta\lambda)\theta$ before the update); ``maximize`` sets
    $g \leftarrow -g$ first.
    """

    lr: float
    beta1: float
    beta2: float
    eps: float
    tau: float
    weight_decay: float
    decoupled: bool
    maximize: bool

    @classmethod
    def from_group(cls, group: dict[str, Any]) -> Hyper:
        """The record of a (validated) ``torch.optim`` param-group dict."""
        beta1, beta2 = group["betas"]
        return cls(
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            tau=group["tau"],
            weight_decay=group["weight_decay"],
            decoupled=bool(group["decoupled_weight_decay"]),
            maximize=bool(group["maximize"]),
        )

    @property
    def l2(self) -> bool:
        r"""Whether the gradient gets $\lambda\theta$ added (coupled weight decay)."""
        return self.weight_decay != 0.0 and not self.decoupled

    @property
    def decays_params(self) -> bool:
        r"""Whether $\theta$ is multiplied by $1-\eta\lambda$ before the update."""
        return self.weight_decay != 0.0 and self.decoupled

    def decay_factor(self) -> float:
        r"""$1-\eta\lambda$."""
        return 1.0 - self.lr * self.weight_decay

    def step_size(self, t: float) -> float:
        r"""$-\eta/(1-\beta_1^t)$, the ``value`` of the final ``addcdiv``."""
        return -self.lr / (1.0 - float(self.beta1**t))

    def bias2(self, t: float) -> float:
        r"""$1-\beta_2^t$."""
        return 1.0 - float(self.beta2**t)


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        if isinstance(value, Tensor) and value.numel() == 1 and not value.requires_grad:
            return float(value.item())
        raise TypeError(f"SETAdam: {name} must be a real number, got {value!r}")
    return float(value)


def validate(
    lr: object, betas: object, eps: object, weight_decay: object, tau: object
) -> tuple[float, tuple[float, float], float, float, float]:
    """Check the hyperparameters; ValueError names the argument, its value and the allowed range."""
    lr_f = _real("lr", lr)
    if not (math.isfinite(lr_f) and lr_f > 0.0):
        raise ValueError(f"SETAdam: invalid lr={lr!r}; need a finite lr > 0")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"SETAdam: invalid betas={betas!r}; need a pair (beta1, beta2)")
    bs = []
    for i, b in enumerate(betas):
        bf = _real(f"betas[{i}]", b)
        if not 0.0 <= bf < 1.0:
            raise ValueError(f"SETAdam: invalid betas[{i}]={b!r}; need 0 <= betas[{i}] < 1")
        bs.append(bf)
    eps_f = _real("eps", eps)
    if not (math.isfinite(eps_f) and eps_f > 0.0):
        raise ValueError(f"SETAdam: invalid eps={eps!r}; need a finite eps > 0")
    wd_f = _real("weight_decay", weight_decay)
    if not (math.isfinite(wd_f) and wd_f >= 0.0):
        raise ValueError(
            f"SETAdam: invalid weight_decay={weight_decay!r}; need a finite weight_decay >= 0"
        )
    tau_f = _real("tau", tau)
    if not 0.0 <= tau_f < 1.0:
        raise ValueError(f"SETAdam: invalid tau={tau!r}; need 0 <= tau < 1")
    return lr_f, (bs[0], bs[1]), eps_f, wd_f, tau_f
