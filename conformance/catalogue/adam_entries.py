r"""The Adam catalogue's first entries: deviations of ports from Adam (any torch.optim / optax convention).

Variant stage functions have the signature of their field in ``setadam_ref.adam.AdamStages``;
symbols as in docs/src/algorithms/adam.md: $b_2 = 1-\beta_2^t$,
$\text{denom} = \sqrt{\hat v + \epsilon_\text{root}} + \epsilon$.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from setadam_ref import adam
from setadam_ref.arrays import F64Array
from setadam_ref.config import AdamConfig
from setadam_ref.context import Context

from . import variants as V
from .deviation import Deviation, entry


def _eps_inside(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, eps_root=cfg.eps_root + cfg.eps, eps=0.0)


def _eps_root_ignored(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, eps_root=0.0)


def _amsgrad_mode_swapped(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, amsgrad_mode="optax" if cfg.amsgrad_mode == "torch" else "torch")


def _amsgrad_ignored(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, amsgrad=False)


def _denom_no_bias_correction2(v_hat: F64Array, ctx: Context) -> F64Array:
    return adam.denom(v_hat * ctx.bias_correction2, ctx)


def _denom_torch_order(v_hat: F64Array, ctx: Context) -> F64Array:
    """torch.optim.Adam's $\\sqrt{v}/\\sqrt{b_2} + \\epsilon$, with $v = \\hat v b_2$."""
    assert isinstance(ctx.config, AdamConfig)
    bc2, cfg = ctx.bias_correction2, ctx.config
    r: F64Array = np.sqrt(v_hat * bc2 + cfg.eps_root * bc2) / math.sqrt(bc2) + cfg.eps
    return r


def _a(*args: Any, **kw: Any) -> Deviation:
    return entry(*args, algorithm="adam", **kw)


ENTRIES: tuple[Deviation, ...] = (
    _a(
        "adam_eps_inside_sqrt",
        "epsilon placement",
        "denom",
        "eps inside the square root: denom = sqrt(v_hat + eps) (optax eps_root convention)",
        "where v_hat is not >> eps^2 (tiny gradients)",
        config=_eps_inside,
    ),
    _a(
        "adam_eps_root_ignored",
        "epsilon placement",
        "denom",
        "eps_root ignored (denom = sqrt(v_hat) + eps)",
        "eps_root > 0",
        config=_eps_root_ignored,
    ),
    _a(
        "adam_no_bias_correction1",
        "bias correction",
        "update",
        "lr not divided by 1 - beta1^t",
        "early steps",
        descend=V.descend_no_bias_correction1,
    ),
    _a(
        "adam_no_bias_correction2",
        "bias correction",
        "denom",
        "v not bias-corrected: denom = sqrt(v) + eps",
        "early steps",
        denom=_denom_no_bias_correction2,
    ),
    _a(
        "adam_step_plus_one",
        "step counter",
        "denom",
        "bias corrections use t + 1",
        "from step 1, early steps",
        counter=V.counter_plus_one,
    ),
    _a(
        "adam_step_minus_one",
        "step counter",
        "denom",
        "stale step counter: t - 1 from step 2 on",
        "from step 2 on, early steps",
        counter=V.counter_minus_one,
    ),
    _a(
        "adam_step_frozen",
        "step counter",
        "denom",
        "step counter advanced on the first step only: every step uses t = 1",
        "from step 2 on, free-running (re-synced it reads as adam_step_minus_one)",
        counter=V.counter_frozen,
    ),
    _a(
        "adam_adabelief_v",
        "second moment",
        "v",
        "AdaBelief-style v = EMA of (g - m)^2",
        "always",
        moments=V.moments_adabelief,
    ),
    _a(
        "adam_swapped_betas",
        "moments",
        "m",
        "beta1 and beta2 swapped between m and v",
        "always",
        moments=V.moments_swapped_betas,
    ),
    _a(
        "adam_amsgrad_mode_swapped",
        "amsgrad",
        "vmax",
        "amsgrad maximum over raw v where bias-corrected v is asked (torch vs optax), or reverse",
        "amsgrad, once v_hat decreases",
        config=_amsgrad_mode_swapped,
    ),
    _a(
        "adam_amsgrad_ignored",
        "amsgrad",
        "vmax",
        "amsgrad=True ignored",
        "amsgrad, once v decreases",
        config=_amsgrad_ignored,
    ),
    _a(
        "adam_maximize_ignored",
        "gradient",
        "grad",
        "maximize=True ignored",
        "maximize=True",
        config=V.without_maximize,
    ),
    _a(
        "adam_weight_decay_ignored",
        "weight decay",
        "grad",
        "weight decay ignored",
        "weight_decay > 0",
        config=V.without_weight_decay,
    ),
    _a(
        "adam_wd_mode_swapped",
        "weight decay",
        "grad",
        "l2 where decoupled is asked (Adam vs AdamW), or the reverse",
        "weight_decay > 0",
        config=V.weight_decay_mode_swapped,
    ),
    _a(
        "adam_decoupled_without_lr",
        "weight decay",
        "update",
        "decoupled weight decay without the lr factor: theta *= (1 - wd)",
        "weight_decay > 0, decoupled",
        descend=V.descend_decoupled_without_lr,
    ),
    _a(
        "adam_torch_denom_order",
        "equivalent",
        "denom",
        "denom = sqrt(v) / sqrt(bc2) + eps (torch.optim's order)",
        "never (equal in exact arithmetic)",
        denom=_denom_torch_order,
        equivalent=True,
    ),
    _a(
        "adam_update_reordered",
        "equivalent",
        "update",
        "update as theta - (lr * m) / (bc1 * denom)",
        "never (equal in exact arithmetic)",
        descend=V.descend_reordered,
        equivalent=True,
    ),
)
