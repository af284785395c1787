r"""Catalogue entries for mistakes of order, scope, counting and timing in the moments and the
three SET stages.

Order: which operation comes first. Scope: which elements a statistic runs over. Counting: how
many elements or steps are counted. Timing: which step a quantity belongs to (a statistic of the
previous step's $v$, eps written into the state, a bias-corrected $m$ stored back). Symbols as
in docs/src/algorithms: $b_1 = 1-\beta_1^t$, $b_2 = 1-\beta_2^t$, $S_1 = \sum v$,
$S_2 = \sum v^2$ over a layer of $d$ coordinates. Sources: docs/src/guide/deviations.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from setadam_ref import adam, setadam, shared, stages
from setadam_ref.arrays import F64Array
from setadam_ref.context import Context, one_minus_power, step_size
from setadam_ref.stages import LayerMoments
from setadam_ref.state import State

from . import stagekit as K
from . import variants as V
from .deviation import Deviation, entry

Arrays = tuple[F64Array, ...]
Stages = Mapping[str, Callable[..., Any]]


# ----------------------------------------------------------------------------- moments
def _v_eps_in_place(
    m: F64Array, v: F64Array, g: F64Array, ctx: Context
) -> tuple[F64Array, F64Array]:
    """eps added to the stored second moment every step (``v.add_(eps)`` in place)."""
    m1, v1 = shared.moments(m, v, g, ctx)
    return m1, v1 + ctx.config.eps


def _m_corrected_in_place(
    m: F64Array, v: F64Array, g: F64Array, ctx: Context
) -> tuple[F64Array, F64Array]:
    """$m_t / b_1$ written back into the state (``m.div_(bc1)``): the next step decays it."""
    m1, v1 = shared.moments(m, v, g, ctx)
    return m1 / ctx.bias_correction1, v1


def _l2_in_m_only(params: Any, grads: Any, state: State) -> Stages:
    """Coupled weight decay added to the gradient of $m$ only; $v$ takes the raw gradient."""
    raw: dict[int, F64Array] = {}

    def gradient(theta: F64Array, g: F64Array, ctx: Context) -> F64Array:
        r = shared.effective_gradient(theta, g, ctx)
        raw[id(r)] = g
        return r

    def moments(m: F64Array, v: F64Array, g: F64Array, ctx: Context) -> tuple[F64Array, F64Array]:
        b1, b2 = ctx.config.betas
        gv = raw.get(id(g), g)
        return m * b1 + g * (1.0 - b1), v * b2 + (gv * gv) * (1.0 - b2)

    return {"gradient": gradient, "moments": moments}


def _corrected_twice(theta: F64Array, m: F64Array, denom: F64Array, ctx: Context) -> F64Array:
    """Both moments bias-corrected and the corrections folded into the step size as well:
    $a_t = \\text{lr}\\sqrt{b_2}/b_1^2$."""
    a = ctx.config.lr * math.sqrt(ctx.bias_correction2) / ctx.bias_correction1**2
    return shared.descend(theta, m, denom, ctx._replace(lr_t=a))


def _bias_corrections_swapped(ctx: Context) -> Context:
    b1, b2 = ctx.config.betas
    bc1, bc2 = one_minus_power(b2, ctx.t), one_minus_power(b1, ctx.t)
    return ctx._replace(bias_correction1=bc1, bias_correction2=bc2, lr_t=step_size(ctx.config, bc1, bc2))


def _counter_twice(t: int) -> int:
    """The counter is advanced twice per step (once per moment, or once per dtype of a group)."""
    return 2 * t


# ----------------------------------------------------------------------------- (S)
def _unbiased_var(s1: float, s2: float, d: int) -> float:
    """$c = \\mu^2/(\\mu^2 + \\sigma^2)$ with ``torch.var``'s default $d-1$ divisor."""
    mu = K.divide(s1, d)
    var = K.divide(s2 - d * mu * mu, d - 1)
    return K.divide(mu * mu, mu * mu + var)


def _global_count(v: Arrays, ctx: Context) -> LayerMoments:
    x = K.cat(v)
    s1, s2 = float(np.sum(x)), float(np.sum(x * x))
    if s2 == 0.0:
        return K.with_cos2(v, 1.0)
    total = sum(int(np.size(a)) for a in ctx.v)
    return K.with_cos2(v, K.divide(s1 * s1, total * s2))


def _cos2_of(source: Callable[[list[int]], list[F64Array]]) -> Stages:
    """(S) with $c$ taken from another quantity of the layer's arrays (found by identity)."""

    def statistics(v: Arrays, ctx: Context) -> LayerMoments:
        return K.with_cos2(v, stages.cos2(source(K.layer_indices(v, ctx.v))))

    return {"layer_statistics": statistics}


def _cos2_of_grad_sq(params: Any, grads: Any, state: State) -> Stages:
    g = [np.ravel(x) for x in grads]
    return _cos2_of(lambda idx: [g[i] * g[i] for i in idx])


def _cos2_of_previous_v(params: Any, grads: Any, state: State) -> Stages:
    prev = [np.ravel(x) for x in state.v]
    return _cos2_of(lambda idx: [prev[i] for i in idx])


def _cos2_of_sqrt_v(v: Arrays, ctx: Context) -> LayerMoments:
    x = K.cat(v)
    s1, s2 = float(np.sum(np.sqrt(x))), float(np.sum(x))
    return K.with_cos2(v, 1.0 if s2 == 0.0 else K.divide(s1 * s1, x.size * s2))


# ----------------------------------------------------------------------------- (T)
Shift = Callable[[Arrays, list[int], Context], float]


def _translate_by(shift: Shift) -> Callable[[Arrays, Context], Arrays]:
    def translate(w: Arrays, ctx: Context) -> Arrays:
        s = shift(w, K.layer_indices(w, ctx.w), ctx)
        return tuple(stages.translate_by(a, K.tau_of(ctx), s) for a in w)

    return translate


def _v_of(idx: list[int], ctx: Context) -> F64Array:
    return K.cat([np.ravel(ctx.v[i]) for i in idx])


def _min_over_nonzero(w: Arrays, idx: list[int], ctx: Context) -> float:
    wv, vv = K.cat(w), _v_of(idx, ctx)
    live = wv[vv > 0]
    return float(np.min(live)) if live.size else stages.layer_min(w)


def _min_before_scaling(w: Arrays, idx: list[int], ctx: Context) -> float:
    """The minimum of $w$ from the unscaled $v$: $\\sqrt{\\min v / b_2 + \\epsilon}$ ($c$ left out)."""
    vv = _v_of(idx, ctx)
    if not vv.size:
        return math.nan
    return stages.embed_scalar(float(np.min(vv)), ctx.bias_correction2, ctx.config.eps)


def _stale_min(params: Any, grads: Any, state: State) -> Stages:
    """The layer minimum of $w$ kept from the previous step (0 before the first)."""
    t0 = int(state.step)
    prev = [np.ravel(x) for x in state.v]

    def shift(w: Arrays, idx: list[int], ctx: Context) -> float:
        if t0 == 0:
            return 0.0
        v_prev = [prev[i] for i in idx]
        m = stages.layer_moments(v_prev)
        bc2 = one_minus_power(ctx.config.betas[1], t0)
        return stages.embed_scalar(m.cos2 * m.v_min, bc2, ctx.config.eps)

    return {"translate": _translate_by(shift)}


# ----------------------------------------------------------------------------- (E)
def _tf_style(vs: F64Array, v: F64Array, c: float, ctx: Context) -> F64Array:
    """eps added to the unscaled $\\sqrt{vs}$ with $\\sqrt{b_2}$ folded into the step size:
    $w = (\\sqrt{vs} + \\epsilon)/\\sqrt{b_2}$ in the reference's terms."""
    r: F64Array = (np.sqrt(vs) + ctx.config.eps) / math.sqrt(ctx.bias_correction2)
    return r


def _adam_tf_style(v_hat: F64Array, ctx: Context) -> F64Array:
    """The other eps placement. Against torch's form, TensorFlow's: $(\\sqrt{v} +
    \\epsilon)/\\sqrt{b_2}$ with $v = \\hat v b_2$; against the TF form (``eps_mode="tf"``, whose
    ``vhat`` stage passes the unscaled $v$ and whose step size holds $\\sqrt{b_2}$), torch's:
    $\\sqrt{v} + \\epsilon\\sqrt{b_2}$."""
    bc2 = ctx.bias_correction2
    if getattr(ctx.config, "eps_mode", "torch") == "tf":
        tf: F64Array = np.sqrt(v_hat) + ctx.config.eps * math.sqrt(bc2)
        return tf
    r: F64Array = (np.sqrt(v_hat * bc2) + ctx.config.eps) / math.sqrt(bc2)
    return r


_TWICE = "the step counter is advanced twice per step: bias corrections use 2t"
_IN_PLACE = "eps added to the stored v every step (v.add_(eps) in place), so it accumulates"
_M_BACK = "bias-corrected m written back into the state (m.div_(bc1)); the next step decays it"
_L2_M = "coupled weight decay added to m's gradient only; v takes the raw gradient"
_SWAPPED = "bias corrections with the betas swapped: 1 - beta2^t for m, 1 - beta1^t for v"
_CORR2 = "moments bias-corrected and the corrections folded into the step size again"
_TF = (
    "TensorFlow-style eps: added to the unscaled sqrt(v), bias correction folded into the step size"
    " (against a TF-form reference, eps_mode='tf': torch's placement, on sqrt(v / (1 - beta2^t)))"
)


SETADAM: tuple[Deviation, ...] = (
    # moments
    entry("v_eps_in_place", "timing", "v", _IN_PLACE,
          "always; largest where v is not >> eps (tiny gradients)", moments=_v_eps_in_place),
    entry("m_bias_corrected_in_place", "timing", "m", _M_BACK,
          "from step 2 (step 1 is right up to rounding)",
          moments=_m_corrected_in_place, descend=V.descend_no_bias_correction1),
    entry("l2_in_m_only", "scope", "v", _L2_M, "weight_decay > 0, l2", from_inputs=_l2_in_m_only),
    entry("step_counted_twice", "counting", "epsilon_embedding", _TWICE, "early steps",
          counter=_counter_twice),
    entry("bias_corrections_swapped", "counting", "epsilon_embedding", _SWAPPED, "early steps",
          embed=K.with_context(setadam.embed, _bias_corrections_swapped),
          descend=K.with_context(shared.descend, _bias_corrections_swapped)),
    entry("bias_correction_twice", "counting", "update", _CORR2, "early steps",
          descend=_corrected_twice),
    # (S)
    entry("cos2_unbiased_var", "counting", "down_scaling",
          "cos^2 as mean^2 / (mean^2 + var) with torch.var's unbiased d - 1 divisor",
          "layers with non-constant v; NaN on one-element and all-zero layers",
          layer_statistics=K.cos2_from_sums(_unbiased_var, zero_layer=False)),
    entry("cos2_global_count", "scope", "down_scaling",
          "cos^2 divided by the model's coordinate count, not the layer's: S1^2 / (D * S2)",
          "more than one layer", layer_statistics=_global_count),
    entry("cos2_of_grad_sq", "timing", "down_scaling",
          "cos^2 of this step's squared gradient instead of v_t",
          "from step 2 (v_1 is proportional to g_1^2)", from_inputs=_cos2_of_grad_sq),
    entry("cos2_of_previous_v", "timing", "down_scaling",
          "cos^2 of the previous step's v (statistics taken before the moment update)",
          "always (c = 1 on step 1, from v_0 = 0)", from_inputs=_cos2_of_previous_v),
    entry("cos2_of_sqrt_v", "order", "down_scaling",
          "cos^2 of sqrt(v) instead of v: (sum sqrt v)^2 / (d * sum v)",
          "layers with non-constant v", layer_statistics=_cos2_of_sqrt_v),
    # (E)
    entry("tf_style_eps", "epsilon embedding", "epsilon_embedding", _TF,
          "early steps, where sqrt(vs) is not >> eps", embed=K.each(_tf_style)),
    # (T)
    entry("min_over_nonzero", "scope", "down_translating",
          "the layer minimum of w taken over coordinates with v > 0 only",
          "tau > 0, layers with some v = 0 (zero layers, one-hot layers)",
          translate=_translate_by(_min_over_nonzero)),
    entry("min_before_scaling", "order", "down_translating",
          "the layer minimum from the unscaled v: wt = w - tau * sqrt(min v / bc2 + eps)",
          "tau > 0, layers with c < 1", translate=_translate_by(_min_before_scaling)),
    entry("stale_min", "timing", "down_translating",
          "the layer minimum of w kept from the previous step (none on step 1)",
          "tau > 0, always (step 1: no translation)", from_inputs=_stale_min),
)  # fmt: skip


def _a(*args: Any, **kw: Any) -> Deviation:
    return entry(*args, algorithm="adam", **kw)


ADAM: tuple[Deviation, ...] = (
    _a("adam_tf_style_eps", "epsilon placement", "denom", _TF,
       "early steps, where sqrt(v) is not >> eps", denom=_adam_tf_style),
    _a("adam_v_eps_in_place", "timing", "v", _IN_PLACE, "where v is not >> eps",
       moments=_v_eps_in_place),
    _a("adam_m_bias_corrected_in_place", "timing", "m", _M_BACK, "from step 2",
       moments=_m_corrected_in_place, descend=V.descend_no_bias_correction1),
    _a("adam_l2_in_m_only", "scope", "v", _L2_M, "weight_decay > 0, l2",
       from_inputs=_l2_in_m_only),
    _a("adam_step_counted_twice", "counting", "denom", _TWICE, "early steps",
       counter=_counter_twice),
    _a("adam_bias_corrections_swapped", "counting", "denom", _SWAPPED, "early steps",
       vhat=K.with_context(adam.vhat, _bias_corrections_swapped),
       descend=K.with_context(shared.descend, _bias_corrections_swapped)),
    _a("adam_bias_correction_twice", "counting", "update", _CORR2, "early steps",
       descend=_corrected_twice),
)  # fmt: skip
