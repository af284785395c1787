r"""Catalogue entries for guard constants and for scalars kept in lower precision.

Guard constants, in every place public ports put them and in the sizes they use ($10^{-20}$,
$10^{-16}$, the default eps $10^{-8}$): the sum of squares $S_2 = \sum v^2$, its product with
the layer size $d S_2$, the sum $S_1 = \sum v$, the norm clamp of ``torch.nn.functional.
cosine_similarity``, the square root, the denominator of the update and the layer minimum.
Lower precision: the bias corrections, the step size or the betas of a float64 port kept in
float32. Symbols as in docs/src/algorithms: $b_1 = 1-\beta_1^t$, $b_2 = 1-\beta_2^t$,
$a_t = \text{lr}/b_1$. Sources: docs/src/guide/deviations.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from setadam_ref import adam, setadam, shared, stages
from setadam_ref.arrays import F64Array
from setadam_ref.context import Context, step_size

from . import stagekit as K
from .deviation import Deviation, entry

Arrays = tuple[F64Array, ...]

#: the guard sizes public ports use (1e-8 is the default eps, hard-coded)
SIZES: tuple[tuple[str, float], ...] = (("1e-20", 1e-20), ("1e-16", 1e-16), ("eps", 1e-8))


# ----------------------------------------------------------------------------- (S) guards
def _sum_sq_guard(g: float) -> Any:
    return K.cos2_from_sums(lambda s1, s2, d: K.divide(s1 * s1, d * (s2 + g)))


def _d_sum_sq_guard(g: float) -> Any:
    return K.cos2_from_sums(lambda s1, s2, d: K.divide(s1 * s1, d * s2 + g))


def _sum_guard(g: float) -> Any:
    """v normalised by its sum plus a guard, $p = v/(S_1+\\gamma)$, $c = 1/(d \\sum p^2)$."""
    return K.cos2_from_sums(lambda s1, s2, d: K.divide((s1 + g) * (s1 + g), d * s2))


def _norm_clamp(g: float) -> Any:
    """``cosine_similarity(v, 1, eps=g) ** 2``: each norm clamped below at ``g``."""
    return K.cos2_from_sums(lambda s1, s2, d: K.divide(s1 * s1, d * max(s2, g * g)))


# ----------------------------------------------------------------------------- (E), (T), update
def _w_guard(g: float) -> Any:
    def fn(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
        r: F64Array = stages.embed(vs, ctx.bias_correction2, ctx.config.eps) + g
        return r

    return K.each(fn)


def _sqrt_arg_guard(g: float) -> Any:
    def fn(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
        r: F64Array = np.sqrt(vs / ctx.bias_correction2 + ctx.config.eps + g)
        return r

    return K.each(fn)


def _min_guard(g: float) -> Any:
    def translate(w: Arrays, ctx: Context) -> Arrays:
        shift = stages.layer_min(w) + g
        return tuple(stages.translate_by(a, K.tau_of(ctx), shift) for a in w)

    return translate


def _update_guard(g: float) -> Any:
    def descend(theta: F64Array, m: F64Array, denom: F64Array, ctx: Context) -> F64Array:
        return shared.descend(theta, m, denom + g, ctx)

    return descend


# ----------------------------------------------------------------------------- precision
def _bias_corrections_f32(ctx: Context) -> Context:
    b1, b2 = ctx.config.betas
    bc1, bc2 = K.one_minus_power_f32(b1, ctx.t), K.one_minus_power_f32(b2, ctx.t)
    return ctx._replace(bias_correction1=bc1, bias_correction2=bc2, lr_t=step_size(ctx.config, bc1, bc2))


def _step_size_f32(ctx: Context) -> Context:
    return ctx._replace(lr_t=K.f32(ctx.lr_t))


def _betas_f32(ctx: Context) -> Context:
    b1, b2 = ctx.config.betas
    return ctx._replace(config=replace(ctx.config, betas=(K.f32(b1), K.f32(b2))))


_F32_BC = (
    "bias corrections 1 - beta^t computed in float32 (a float32 step tensor) in a float64 port"
)
_F32_LR = "step size lr / (1 - beta1^t) kept in float32 in a float64 port"
_F32_BETAS = "betas kept in float32 (float32 tensors) in a float64 port's moment updates"
_PRECISION_WHEN = "float64 ports (a float32 scalar is within a float32 port's budget)"


def _guards_setadam() -> tuple[Deviation, ...]:
    out = []
    for label, g in SIZES:
        out.append(entry(
            f"cos2_sum_sq_guard_{label}", "guard constant in cos^2", "down_scaling",
            f"guard added to sum(v^2): c = S1^2 / (d * (S2 + {g:g}))",
            f"where sum(v^2) is not >> {g:g} (tiny gradients)",
            layer_statistics=_sum_sq_guard(g),
        ))  # fmt: skip
    out += [
        entry(
            "cos2_guard_1e-20", "guard constant in cos^2", "down_scaling",
            "guard in the cos^2 denominator: c = S1^2 / (d * S2 + 1e-20)",
            "where d * sum(v^2) is not >> 1e-20 (tiny gradients, float64)",
            layer_statistics=_d_sum_sq_guard(1e-20),
        ),
        entry(
            "cos2_sum_guard_1e-16", "guard constant in cos^2", "down_scaling",
            "v normalised by its sum plus a guard: c = (S1 + 1e-16)^2 / (d * S2)",
            "where sum(v) is not >> 1e-16 (tiny gradients)",
            layer_statistics=_sum_guard(1e-16),
        ),
        entry(
            "cos2_sum_guard_eps", "guard constant in cos^2", "down_scaling",
            "v normalised by its sum plus eps: c = (S1 + 1e-8)^2 / (d * S2)",
            "where sum(v) is not >> 1e-8 (tiny and normal gradients)",
            layer_statistics=_sum_guard(1e-8),
        ),
        entry(
            "cos2_norm_clamp_eps", "guard constant in cos^2", "down_scaling",
            "cos^2 from torch's cosine_similarity(v, 1, eps=1e-8): c = S1^2 / (d * max(S2, 1e-16))",
            "where sqrt(sum(v^2)) < 1e-8 (tiny gradients)",
            layer_statistics=_norm_clamp(1e-8),
        ),
        entry(
            "w_guard_eps", "guard constant in the square root", "epsilon_embedding",
            "eps added inside and again outside the square root: w = sqrt(vs / bc2 + eps) + eps",
            "where sqrt(vs / bc2 + eps) is not >> eps (always visible in float64)",
            embed=_w_guard(1e-8),
        ),
        entry(
            "w_guard_1e-16", "guard constant in the square root", "epsilon_embedding",
            "a guard added after the square root: w = sqrt(vs / bc2 + eps) + 1e-16",
            "float64 (a relative change of at most 1e-12)",
            embed=_w_guard(1e-16),
        ),
        entry(
            "sqrt_arg_guard_1e-16", "guard constant in the square root", "epsilon_embedding",
            "a guard inside the square root besides eps: w = sqrt(vs / bc2 + eps + 1e-16)",
            "float64, where vs / bc2 is not >> eps (tiny gradients)",
            embed=_sqrt_arg_guard(1e-16),
        ),
        entry(
            "translate_min_guard_eps", "guard constant in the minimum", "down_translating",
            "eps added to the layer minimum before translating: wt = w - tau * (min w + eps)",
            "tau > 0, where min w is not >> eps (always visible in float64)",
            translate=_min_guard(1e-8),
        ),
        entry(
            "update_guard_eps", "guard constant in the denominator", "update",
            "eps added to the update's denominator: theta -= a_t * m / (wt + eps)",
            "where wt is not >> eps (tiny gradients; float64 always)",
            descend=_update_guard(1e-8),
        ),
        entry(
            "update_guard_1e-16", "guard constant in the denominator", "update",
            "a guard added to the update's denominator: theta -= a_t * m / (wt + 1e-16)",
            "float64 (a relative change of at most 1e-12)",
            descend=_update_guard(1e-16),
        ),
        entry(
            "bias_corrections_float32", "lower precision", "epsilon_embedding", _F32_BC,
            _PRECISION_WHEN,
            embed=K.with_context(setadam.embed, _bias_corrections_f32),
            descend=K.with_context(shared.descend, _bias_corrections_f32),
        ),
        entry(
            "step_size_float32", "lower precision", "update", _F32_LR, _PRECISION_WHEN,
            descend=K.with_context(shared.descend, _step_size_f32),
        ),
        entry(
            "betas_float32", "lower precision", "m", _F32_BETAS, _PRECISION_WHEN,
            moments=K.with_context(shared.moments, _betas_f32),
        ),
    ]  # fmt: skip
    return tuple(out)


def _a(*args: Any, **kw: Any) -> Deviation:
    return entry(*args, algorithm="adam", **kw)


def _adam_eps_twice(v_hat: F64Array, ctx: Context) -> F64Array:
    eps = ctx.config.eps
    return adam.denom(v_hat + eps, ctx)


ADAM: tuple[Deviation, ...] = (
    _a(
        "adam_eps_twice", "guard constant in the square root", "denom",
        "eps inside and outside the square root: denom = sqrt(v_hat + eps) + eps",
        "where v_hat is not >> eps (tiny gradients)",
        denom=_adam_eps_twice,
    ),
    _a(
        "adam_update_guard_eps", "guard constant in the denominator", "update",
        "eps added once more to the denominator: theta -= a_t * m / (denom + eps)",
        "where denom is not >> eps (tiny gradients)",
        descend=_update_guard(1e-8),
    ),
    _a(
        "adam_bias_corrections_float32", "lower precision", "denom", _F32_BC, _PRECISION_WHEN,
        vhat=K.with_context(adam.vhat, _bias_corrections_f32),
        descend=K.with_context(shared.descend, _bias_corrections_f32),
    ),
    _a(
        "adam_step_size_float32", "lower precision", "update", _F32_LR, _PRECISION_WHEN,
        descend=K.with_context(shared.descend, _step_size_f32),
    ),
    _a(
        "adam_betas_float32", "lower precision", "m", _F32_BETAS, _PRECISION_WHEN,
        moments=K.with_context(shared.moments, _betas_f32),
    ),
)  # fmt: skip

SETADAM: tuple[Deviation, ...] = _guards_setadam()
