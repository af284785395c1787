r"""The stage functions Adam and SET-Adam share: effective gradient, the two moments, the descent.

$$g \leftarrow \sigma g + \lambda_{\texttt{l2}}\,\theta_{t-1},\qquad
  m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,$$

$$\theta_t = \rho\,\theta_{t-1} - a_t\, m_t / \text{denom},\qquad a_t = \text{lr} / (1-\beta_1^t),$$

with $\sigma = -1$ for ``maximize``; ``denom`` is SET-Adam's $\tilde w$ or Adam's
$\sqrt{\hat v + \epsilon_\text{root}} + \epsilon$. Each function takes whole (flattened) arrays
and a :class:`~setadam_ref.context.Context`; the operand order is the reference's rounding order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .arrays import F64Array, shaped_like
from .context import Context


def effective_gradient(theta: F64Array, g: F64Array, ctx: Context) -> F64Array:
    """$g$ negated for ``maximize``, plus $\\lambda_{\\texttt{l2}}\\theta_{t-1}$ (coupled decay).

    Returns ``g`` itself (no copy) when neither applies.
    """
    maximize = ctx.config.maximize
    if ctx.l2 != 0.0:
        return theta * ctx.l2 - g if maximize else theta * ctx.l2 + g
    return -g if maximize else g


def moments(m: F64Array, v: F64Array, g: F64Array, ctx: Context) -> tuple[F64Array, F64Array]:
    """$(m_t, v_t)$ from $(m_{t-1}, v_{t-1})$ and the effective gradient $g_t$."""
    b1, b2 = ctx.config.betas
    return m * b1 + g * (1.0 - b1), v * b2 + (g * g) * (1.0 - b2)


def descend(theta: F64Array, m: F64Array, denom: F64Array, ctx: Context) -> F64Array:
    """$\\theta_t = \\rho\\,\\theta_{t-1} - (m_t / \\text{denom})\\, a_t$."""
    step = (m / denom) * ctx.lr_t
    # rho = 1 exactly when there is no decoupled decay; theta * 1.0 would only cost a pass.
    return (theta * ctx.decay if ctx.decay != 1.0 else theta) - step


def recorded(
    ctx: Context,
    g: Sequence[F64Array],
    m: tuple[F64Array, ...],
    v: tuple[F64Array, ...],
    denom: Sequence[F64Array],
    theta: Sequence[F64Array],
    theta0: Sequence[F64Array],
    like: Sequence[Any],
) -> dict[str, Any]:
    """The trace fields Adam and SET-Adam share: the step, the bias corrections, $g_t$ (a copy: it
    may be the caller's own array), $m_t$, $v_t$, the stepsizes $a_t/\text{denom}$ and the update
    $\theta_t - \theta_{t-1}$, shaped as the parameters."""
    return {
        "t": ctx.t,
        "bias_correction1": ctx.bias_correction1,
        "bias_correction2": ctx.bias_correction2,
        "grad": shaped_like([np.array(x) for x in g], like),
        "m": m,
        "v": v,
        "stepsize": shaped_like([ctx.lr_t / d for d in denom], like),
        "update": shaped_like([a - b for a, b in zip(theta, theta0, strict=True)], like),
    }
