r"""The scalars of step $t$ and the context record every stage function receives.

$$b_1 = 1-\beta_1^t,\qquad b_2 = 1-\beta_2^t,\qquad a_t = \text{lr}/b_1
  \ (\texttt{eps\_mode="tf"}:\ a_t = \text{lr}\sqrt{b_2}/b_1),\qquad
  \lambda_{\texttt{l2}} = \lambda \text{ (mode } \texttt{l2}\text{, else 0)},\qquad
  \rho = 1-\text{lr}\,\lambda \text{ (mode } \texttt{decoupled}\text{, else 1)}.$$
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .arrays import F64Array
from .config import Config
from .layers import Layers


def one_minus_power(beta: float, t: int) -> float:
    r"""$1 - \beta^t$ to within a few ulps, also when it is tiny.

    The naive ``1 - beta**t`` cancels: for $\beta_2 = 0.9999$, $t = 1$ its relative error is
    $u/(1-\beta_2) = 10^4 u$. Here $\ln\beta$ comes from ``log1p(beta - 1)``, whose argument is
    exact for $\beta \in [1/2, 1)$ (Sterbenz), and $1-\beta^t = -\mathrm{expm1}(t\ln\beta)$ has
    relative error of a few $u$ (docs: numerics/reference-error.md).
    """
    if beta == 0.0:
        return 1.0
    log_beta = math.log1p(beta - 1.0) if beta >= 0.5 else math.log(beta)
    return -math.expm1(t * log_beta)


def bias_corrections(beta1: float, beta2: float, t: int) -> tuple[float, float]:
    """$(1-\\beta_1^t, 1-\\beta_2^t)$, each accurate to a few ulps (``one_minus_power``)."""
    return one_minus_power(beta1, t), one_minus_power(beta2, t)


class Context(NamedTuple):
    """What a stage function may look at besides its own operands.

    ``config`` and ``t`` are those the step runs with; ``bias_correction1`` $= b_1$,
    ``bias_correction2`` $= b_2$, ``lr_t`` $= a_t$, ``l2`` $= \\lambda_{\\texttt{l2}}$, ``decay``
    $= \\rho$. For SET-Adam, ``layers`` is the layering, ``v`` holds $v_t$ of every array once the
    moments are formed, and ``w`` holds $w$ of every array once (E) has run on every layer, so a
    stage may use whole-model statistics (the catalogue's global-statistics variants do).
    """

    config: Config
    t: int
    bias_correction1: float
    bias_correction2: float
    lr_t: float
    l2: float
    decay: float
    layers: Layers = ()
    v: tuple[F64Array, ...] = ()
    w: tuple[F64Array, ...] = ()


def step_size(config: Config, bc1: float, bc2: float) -> float:
    """$a_t$: ``lr / bc1``, or with the tf form ``lr * sqrt(bc2) / bc1`` (keras' order)."""
    if getattr(config, "eps_mode", "torch") == "tf":
        return config.lr * math.sqrt(bc2) / bc1
    return config.lr / bc1


def context(config: Config, t: int, layers: Layers = ()) -> Context:
    """The ``Context`` of step ``t`` (1-based) under ``config``."""
    bc1, bc2 = bias_corrections(config.betas[0], config.betas[1], t)
    decoupled = config.weight_decay_mode == "decoupled"
    return Context(
        config=config,
        t=t,
        bias_correction1=bc1,
        bias_correction2=bc2,
        lr_t=step_size(config, bc1, bc2),
        l2=0.0 if decoupled else config.weight_decay,
        decay=1.0 - config.lr * config.weight_decay if decoupled else 1.0,
        layers=layers,
    )
