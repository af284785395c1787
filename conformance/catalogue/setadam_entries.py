r"""The SET-Adam catalogue's first entries: eps placement, bias correction, counter, moments, the three stages, weight decay.

Each variant stage function has the signature of its field in ``setadam_ref.setadam.SETAdamStages``
(per layer: tuples of the layer's flattened arrays; ``ctx`` a ``setadam_ref.context.Context``).
Symbols as in docs/src/algorithms/setadam.md: $b_2 = 1-\beta_2^t$, $S_1 = \sum_i v_i$,
$S_2 = \sum_i v_i^2$ over a layer of $d$ coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from setadam_ref import stages
from setadam_ref.arrays import F64Array
from setadam_ref.config import SETAdamConfig
from setadam_ref.context import Context
from setadam_ref.layers import Layers
from setadam_ref.stages import LayerMoments

from . import stagekit as K
from . import variants as V
from .deviation import Deviation, Relayout, entry

Arrays = tuple[F64Array, ...]
_each, _tau, _with_cos2 = K.each, K.tau_of, K.with_cos2


# ----------------------------------------------------------------------------- (E) variants
def _eps_outside(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    r: F64Array = np.sqrt(vs / ctx.bias_correction2) + ctx.config.eps
    return r


def _eps_bias_corrected(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    r: F64Array = np.sqrt((vs + ctx.config.eps) / ctx.bias_correction2)
    return r


def _eps_scaled_by_c(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    r: F64Array = np.sqrt(c * (v / ctx.bias_correction2 + ctx.config.eps))
    return r


def _eps_omitted(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    r: F64Array = np.sqrt(vs / ctx.bias_correction2)
    return r


def _no_bias_correction2(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    return stages.embed(vs, 1.0, ctx.config.eps)


def _sqrt_order(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    r: F64Array = np.sqrt(vs + ctx.config.eps * ctx.bias_correction2) / math.sqrt(
        ctx.bias_correction2
    )
    return r


def _scale_after_bias_correction(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    r: F64Array = np.sqrt(c * (v / ctx.bias_correction2) + ctx.config.eps)
    return r


def _embed_translated_v(vs: Arrays, v: Arrays, c: float, ctx: Context) -> Arrays:
    """tau applied to vs instead of w: $w = \\sqrt{(vs - \\tau \\min vs)/b_2 + \\epsilon}$."""
    shift = _tau(ctx) * stages.layer_min(vs)
    return tuple(stages.embed(x - shift, ctx.bias_correction2, ctx.config.eps) for x in vs)


# ----------------------------------------------------------------------------- (S) variants
def _unguarded_cos2(guard: float) -> Callable[[Arrays, Context], LayerMoments]:
    """$c = S_1^2 / (d S_2 + \\text{guard})$ in plain sums, without the zero-layer case."""

    def statistics(v: Arrays, ctx: Context) -> LayerMoments:
        x = np.concatenate(v) if v else np.zeros(0)
        s1 = np.sum(x)
        return _with_cos2(v, float(np.divide(s1 * s1, x.size * np.sum(x * x) + guard)))

    return statistics


def _cos_not_squared(v: Arrays, ctx: Context) -> LayerMoments:
    return _with_cos2(v, math.sqrt(stages.cos2(v)))


def _cos2_one(v: Arrays, ctx: Context) -> LayerMoments:
    return _with_cos2(v, 1.0)


def _global_cos2(v: Arrays, ctx: Context) -> LayerMoments:
    return _with_cos2(v, stages.cos2(ctx.v))


# ----------------------------------------------------------------------------- (T) variants
def _translate_by(statistic: Callable[[F64Array], Any]) -> Callable[[Arrays, Context], Arrays]:
    """(T) with $\\min_i w_{l,i}$ replaced by ``statistic`` of the layer's w."""

    def translate(w: Arrays, ctx: Context) -> Arrays:
        x = np.concatenate(w) if w else np.zeros(0)
        shift = float(statistic(x)) if x.size else math.nan
        return tuple(stages.translate_by(a, _tau(ctx), shift) for a in w)

    return translate


def _translate_none(w: Arrays, ctx: Context) -> Arrays:
    return w


def _global_min(w: Arrays, ctx: Context) -> Arrays:
    return tuple(stages.translate_by(a, _tau(ctx), stages.layer_min(ctx.w)) for a in w)


# ----------------------------------------------------------------------------- layouts, config
def _whole_model(shapes: Sequence[tuple[int, ...]], layers: Layers) -> Relayout:
    sizes = [math.prod(s) for s in shapes]
    return Relayout(tuple((n,) for n in sizes), (tuple(range(len(shapes))),))


def _per_row(shapes: Sequence[tuple[int, ...]], layers: Layers) -> Relayout:
    """Every row of an array of rank >= 2 is a layer of its own; other arrays are one each."""
    pieces = []
    for s in shapes:
        n = math.prod(s)
        pieces.append((n // s[0],) * s[0] if len(s) >= 2 and s[0] > 0 else (n,))
    count = sum(len(p) for p in pieces)
    return Relayout(tuple(pieces), tuple((k,) for k in range(count)))


def _tau_half(cfg: SETAdamConfig) -> SETAdamConfig:
    return replace(cfg, tau=0.5)


ENTRIES: tuple[Deviation, ...] = (
    # epsilon embedding
    entry(
        "eps_outside_sqrt",
        "epsilon embedding",
        "epsilon_embedding",
        "eps added outside the square root, Adam style: w = sqrt(vs / bc2) + eps",
        "always; largest where vs / bc2 << eps (tiny gradients)",
        embed=_each(_eps_outside),
    ),
    entry(
        "eps_bias_corrected",
        "epsilon embedding",
        "epsilon_embedding",
        "eps bias-corrected together with v: w = sqrt((vs + eps) / bc2)",
        "early steps (bc2 far from 1) and where vs is not >> eps",
        embed=_each(_eps_bias_corrected),
    ),
    entry(
        "eps_scaled_by_c",
        "epsilon embedding",
        "epsilon_embedding",
        "eps embedded before down-scaling: w = sqrt(c * (v / bc2 + eps))",
        "layers with c < 1 where v / bc2 is not >> eps",
        embed=_each(_eps_scaled_by_c),
    ),
    entry(
        "eps_omitted",
        "epsilon embedding",
        "epsilon_embedding",
        "eps left out: w = sqrt(vs / bc2) (division by zero where v = 0)",
        "where vs / bc2 is not >> eps; Inf/NaN on zero v",
        embed=_each(_eps_omitted),
    ),
    # bias correction
    entry(
        "no_bias_correction1",
        "bias correction",
        "update",
        "lr not divided by the first bias correction 1 - beta1^t",
        "early steps (decays like beta1^t)",
        descend=V.descend_no_bias_correction1,
    ),
    entry(
        "no_bias_correction2",
        "bias correction",
        "epsilon_embedding",
        "second moment not bias-corrected: w = sqrt(vs + eps)",
        "early steps (decays like beta2^t, slowly)",
        embed=_each(_no_bias_correction2),
    ),
    entry(
        "no_bias_correction",
        "bias correction",
        "epsilon_embedding",
        "neither moment bias-corrected",
        "early steps",
        embed=_each(_no_bias_correction2),
        descend=V.descend_no_bias_correction1,
    ),
    # step counter
    entry(
        "step_plus_one",
        "step counter",
        "epsilon_embedding",
        "bias corrections use t + 1 (counter starts at 1 and is incremented before use)",
        "from step 1, early steps",
        counter=V.counter_plus_one,
    ),
    entry(
        "step_minus_one",
        "step counter",
        "epsilon_embedding",
        "stale step counter: bias corrections use t - 1 from step 2 on (right on step 1)",
        "from step 2 on, early steps",
        counter=V.counter_minus_one,
    ),
    entry(
        "step_frozen",
        "step counter",
        "epsilon_embedding",
        "step counter advanced on the first step only: every step uses t = 1",
        "from step 2 on, free-running (re-synced it reads as step_minus_one)",
        counter=V.counter_frozen,
    ),
    # moments
    entry(
        "adabelief_v",
        "second moment",
        "v",
        "AdaBelief-style second moment: v = EMA of (g - m)^2 instead of g^2",
        "always",
        moments=V.moments_adabelief,
    ),
    entry(
        "swapped_betas",
        "moments",
        "m",
        "beta1 and beta2 swapped: m uses beta2, v uses beta1",
        "always",
        moments=V.moments_swapped_betas,
    ),
    # down-scaling
    entry(
        "cos2_guard_1e-16",
        "guard constant in cos^2",
        "down_scaling",
        "guard in the cos^2 denominator: c = S1^2 / (d * S2 + 1e-16)",
        "where d * sum(v^2) is not >> 1e-16 (tiny gradients)",
        layer_statistics=_unguarded_cos2(1e-16),
    ),
    entry(
        "cos2_guard_eps",
        "guard constant in cos^2",
        "down_scaling",
        # the guard is the default eps, as public ports hard-code it
        "guard in the cos^2 denominator: c = S1^2 / (d * S2 + 1e-8)",
        "where d * sum(v^2) is not >> 1e-8 (tiny and normal gradients)",
        layer_statistics=_unguarded_cos2(1e-8),
    ),
    entry(
        "cos2_zero_layer_nan",
        "non-finite",
        "down_scaling",
        "cos^2 as S1^2 / (d * S2) with no case for an all-zero layer: 0/0 = NaN",
        "only on all-zero layers (NaN where the reference is finite)",
        layer_statistics=_unguarded_cos2(0.0),
    ),
    entry(
        "cos_not_squared",
        "down-scaling",
        "down_scaling",
        "cos instead of cos^2: c = S1 / sqrt(d * S2)",
        "layers with non-constant v",
        layer_statistics=_cos_not_squared,
    ),
    entry(
        "no_down_scaling",
        "down-scaling",
        "down_scaling",
        "down-scaling omitted (c = 1)",
        "layers with non-constant v",
        layer_statistics=_cos2_one,
    ),
    entry(
        "global_cos2",
        "layer statistics",
        "down_scaling",
        "one cos^2 for all arrays (global instead of layerwise)",
        "more than one layer",
        layer_statistics=_global_cos2,
    ),
    entry(
        "global_min",
        "layer statistics",
        "down_translating",
        "one minimum of w for all arrays (global instead of layerwise)",
        "more than one layer, tau > 0",
        translate=_global_min,
    ),
    entry(
        "whole_model_one_layer",
        "layer split",
        "down_scaling",
        "the whole model is one layer (cos^2 and min global)",
        "more than one layer",
        layout=_whole_model,
    ),
    entry(
        "per_row_layers",
        "layer split",
        "down_scaling",
        "every row of a matrix is its own layer",
        "arrays of rank >= 2",
        layout=_per_row,
    ),
    # down-translating
    entry(
        "translate_mean",
        "down-translating",
        "down_translating",
        "translation by tau * mean(w) instead of tau * min(w)",
        "tau > 0 and w not constant",
        translate=_translate_by(np.mean),
    ),
    entry(
        "translate_max",
        "down-translating",
        "down_translating",
        "translation by tau * max(w) instead of tau * min(w)",
        "tau > 0 and w not constant",
        translate=_translate_by(np.max),
    ),
    entry(
        "translate_v",
        "down-translating",
        "epsilon_embedding",
        "tau applied to v instead of w: w = sqrt((vs - tau * min vs) / bc2 + eps), no translation",
        "tau > 0",
        embed=_embed_translated_v,
        translate=_translate_none,
    ),
    entry(
        "no_down_translating",
        "down-translating",
        "down_translating",
        "down-translating omitted (wt = w)",
        "tau > 0",
        translate=_translate_none,
    ),
    entry(
        "tau_fixed_half",
        "hyperparameter ignored",
        "down_translating",
        "tau hard-coded at 0.5 (the configured tau is ignored)",
        "tau != 0.5",
        config=_tau_half,
    ),
    # gradient and weight decay
    entry(
        "maximize_ignored",
        "gradient",
        "grad",
        "maximize=True ignored (descends instead of ascending)",
        "maximize=True",
        config=V.without_maximize,
    ),
    entry(
        "weight_decay_ignored",
        "weight decay",
        "grad",
        "weight decay ignored",
        "weight_decay > 0",
        config=V.without_weight_decay,
    ),
    entry(
        "wd_mode_swapped",
        "weight decay",
        "grad",
        "wrong weight-decay mode: l2 (coupled) where decoupled is asked, or the reverse",
        "weight_decay > 0",
        config=V.weight_decay_mode_swapped,
    ),
    entry(
        "decoupled_without_lr",
        "weight decay",
        "update",
        "decoupled weight decay without the lr factor: theta *= (1 - wd)",
        "weight_decay > 0, decoupled",
        descend=V.descend_decoupled_without_lr,
    ),
    # mathematically equivalent rewrites: documented, tested, never a cause
    entry(
        "scale_after_bias_correction",
        "equivalent",
        "epsilon_embedding",
        "c applied after the bias correction: w = sqrt(c * (v / bc2) + eps)",
        "never (equal in exact arithmetic)",
        embed=_each(_scale_after_bias_correction),
        equivalent=True,
    ),
    entry(
        "sqrt_order",
        "equivalent",
        "epsilon_embedding",
        "w = sqrt(vs + eps * bc2) / sqrt(bc2)",
        "never (equal in exact arithmetic)",
        embed=_each(_sqrt_order),
        equivalent=True,
    ),
    entry(
        "update_reordered",
        "equivalent",
        "update",
        "update as theta - (lr * m) / (bc1 * wt)",
        "never (equal in exact arithmetic)",
        descend=V.descend_reordered,
        equivalent=True,
    ),
)
