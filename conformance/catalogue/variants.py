r"""Stage functions and transforms that both catalogues use: moments, descent, config, counter.

Each is the reference's stage function (``setadam_ref.shared``) with one thing changed, in the
signature of ``setadam_ref.setadam.SETAdamStages`` / ``setadam_ref.adam.AdamStages``; symbols as
in docs/src/algorithms: $b_1 = 1-\beta_1^t$, $a_t = \text{lr}/b_1$, $\rho$ the decoupled decay.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from setadam_ref import shared
from setadam_ref.arrays import F64Array
from setadam_ref.config import AdamConfig, SETAdamConfig
from setadam_ref.context import Context

C = TypeVar("C", AdamConfig, SETAdamConfig)


# ----------------------------------------------------------------------------- moments
def moments_adabelief(
    m: F64Array, v: F64Array, g: F64Array, ctx: Context
) -> tuple[F64Array, F64Array]:
    """AdaBelief's second moment: $v_t = \\beta_2 v_{t-1} + (1-\\beta_2)(g_t - m_t)^2$."""
    b1, b2 = ctx.config.betas
    m1 = m * b1 + g * (1.0 - b1)
    d = g - m1
    return m1, v * b2 + (d * d) * (1.0 - b2)


def moments_swapped_betas(
    m: F64Array, v: F64Array, g: F64Array, ctx: Context
) -> tuple[F64Array, F64Array]:
    """$m$ with $\\beta_2$, $v$ with $\\beta_1$."""
    b1, b2 = ctx.config.betas
    return shared.moments(m, v, g, ctx._replace(config=replace(ctx.config, betas=(b2, b1))))


# ----------------------------------------------------------------------------- descent
def descend_no_bias_correction1(
    theta: F64Array, m: F64Array, denom: F64Array, ctx: Context
) -> F64Array:
    """$a_t = \\text{lr}$: the first bias correction left out."""
    return shared.descend(theta, m, denom, ctx._replace(lr_t=ctx.config.lr))


def descend_decoupled_without_lr(
    theta: F64Array, m: F64Array, denom: F64Array, ctx: Context
) -> F64Array:
    """Decoupled decay $\\rho = 1 - \\lambda$ (the lr factor left out)."""
    cfg = ctx.config
    if cfg.weight_decay_mode != "decoupled":
        return shared.descend(theta, m, denom, ctx)
    return shared.descend(theta, m, denom, ctx._replace(decay=1.0 - cfg.weight_decay))


def descend_reordered(theta: F64Array, m: F64Array, denom: F64Array, ctx: Context) -> F64Array:
    """$\\rho\\theta - (\\text{lr}\\, m)/(b_1\\,\\text{denom})$: equal in exact arithmetic."""
    rho_theta = theta * ctx.decay if ctx.decay != 1.0 else theta
    r: F64Array = rho_theta - (ctx.config.lr * m) / (ctx.bias_correction1 * denom)
    return r


# ----------------------------------------------------------------------------- configuration
def without_maximize(cfg: C) -> C:
    return replace(cfg, maximize=False)


def without_weight_decay(cfg: C) -> C:
    return replace(cfg, weight_decay=0.0)


def weight_decay_mode_swapped(cfg: C) -> C:
    return replace(
        cfg, weight_decay_mode="l2" if cfg.weight_decay_mode == "decoupled" else "decoupled"
    )


# ----------------------------------------------------------------------------- step counter
def counter_plus_one(t: int) -> int:
    """The counter starts at 1 and is incremented before use."""
    return t + 1


def counter_minus_one(t: int) -> int:
    """A stale counter: right on step 1, one behind from step 2 on."""
    return max(t - 1, 1)


def counter_frozen(t: int) -> int:
    """A counter advanced on the first step only: every step uses t = 1 (seen free-running; a
    port re-synced to step t - 1 then keeps that value, which is ``counter_minus_one``)."""
    return 1
