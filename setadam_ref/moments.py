r"""The parts Adam and SET-Adam share: step scalars, effective gradient, the two moments, and
the descent itself, on one block.

$$g \leftarrow \pm g\ (\text{maximize}) + \lambda\theta\ (\texttt{l2}),\qquad
  m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,$$
$$\theta_t = \theta_{t-1}(1 - \text{lr}\,\lambda_\text{dec}) - a_t\, m_t / \text{denom},\qquad
  a_t = \text{lr} / (1-\beta_1^t).$$
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .arrays import F64Array
from .config import Config


class StepScalars(NamedTuple):
    """The scalars of step $t$: bias corrections, $a_t$, the coupled (l2) weight-decay
    coefficient (0 when decoupled) and the decoupled decay factor (1 when coupled)."""

    bias_correction1: float
    bias_correction2: float
    a: float
    l2: float
    decay: float


def step_scalars(cfg: Config, t: int) -> StepScalars:
    bc1, bc2 = bias_corrections(cfg.betas[0], cfg.betas[1], t)
    decoupled = cfg.weight_decay_mode == "decoupled"
    return StepScalars(
        bc1,
        bc2,
        cfg.lr / bc1,
        0.0 if decoupled else cfg.weight_decay,
        1.0 - cfg.lr * cfg.weight_decay if decoupled else 1.0,
    )


def effective_gradient(
    g: F64Array, p: F64Array, *, maximize: bool, l2: float, out: F64Array
) -> F64Array:
    """$g$ negated for ``maximize``, plus ``l2`` $\\cdot\\,\\theta$ (coupled weight decay).

    Returns ``g`` itself (no copy) when neither applies; otherwise writes ``out``.
    """
    if l2 != 0.0:
        np.multiply(p, l2, out=out)
        return np.subtract(out, g, out=out) if maximize else np.add(out, g, out=out)
    if maximize:
        return np.negative(g, out=out)
    return g


def update_moments(
    g: F64Array,
    m: F64Array,
    v: F64Array,
    beta1: float,
    beta2: float,
    m_out: F64Array,
    v_out: F64Array,
    tmp: F64Array,
) -> None:
    """Write $m_t$ to ``m_out`` and $v_t$ to ``v_out``; ``tmp`` is clobbered."""
    np.multiply(m, beta1, out=m_out)
    np.multiply(g, 1.0 - beta1, out=tmp)
    np.add(m_out, tmp, out=m_out)
    np.multiply(g, g, out=tmp)
    np.multiply(tmp, 1.0 - beta2, out=tmp)
    np.multiply(v, beta2, out=v_out)
    np.add(v_out, tmp, out=v_out)


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


def descend(
    p: F64Array,
    m: F64Array,
    denom: F64Array,
    sc: StepScalars,
    p_out: F64Array,
    stepsize_out: F64Array | None = None,
    update_out: F64Array | None = None,
) -> None:
    """Write $\theta_t$ to ``p_out`` (``denom`` is clobbered); optionally the stepsizes
    $a_t/\text{denom}$ and the update $\theta_t - \theta_{t-1}$ for a trace."""
    if stepsize_out is not None:
        np.divide(sc.a, denom, out=stepsize_out)
    np.divide(m, denom, out=denom)
    np.multiply(denom, sc.a, out=denom)
    if sc.decay != 1.0:
        np.multiply(p, sc.decay, out=p_out)
        np.subtract(p_out, denom, out=p_out)
    else:
        np.subtract(p, denom, out=p_out)
    if update_out is not None:
        np.subtract(p_out, p, out=update_out)


def traced_descent_outputs(
    tr: dict[str, list[F64Array]] | None, i: int, sl: slice
) -> tuple[F64Array | None, F64Array | None]:
    """The (stepsize, update) trace buffers of array ``i``, block ``sl`` ((None, None) untraced)."""
    if tr is None:
        return None, None
    return tr["stepsize"][i][sl], tr["update"][i][sl]
