r"""Catalogue of known deviations from SET-Adam, replayed on the reference to name a likely cause.

Each :class:`Deviation` is SET-Adam with exactly one thing changed (eps outside the square root,
a missing bias correction, an AdaBelief-style second moment, a guard constant in the cos^2
denominator, global instead of layerwise statistics, a wrong weight-decay mode, a step-counter
error, ...). A deviation is replayed in NumPy float64 from the same inputs the port was given,
reusing ``setadam_ref.stages`` (``down_scale``/``cos2``, ``embed``, ``translate``) for every stage it
does not change, and compared with what the port produced.

:func:`rank_causes` answers "which known bug explains this port's output?": for one re-synced step
it returns the deviations whose replay is clearly closer to the port's output than the reference
is, best first. :func:`rank_causes_steps` does the same over several re-synced steps, so that a
deviation that would already differ on a step where the port agrees with the reference (e.g.
``step_plus_one`` for a port whose counter only goes wrong from step 2) is ruled out.

Some rewrites are mathematically equivalent to SET-Adam (c applied after the bias correction,
``sqrt(vs + eps*bc2) / sqrt(bc2)``, the layer minimum taken on v, a reordered update). They are in
the catalogue with ``equivalent=True`` for documentation and testing, and are never returned as a
cause: a port that computes them is correct and must be accepted.

The guide page ``docs/src/guide/deviations.md`` lists every entry with its signature and size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from setadam_ref import stages as _stages
from setadam_ref.config import AdamConfig, Config, SETAdamConfig
from setadam_ref.context import bias_corrections

F64 = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]

__all__ = [
    "ADAM_CATALOGUE",
    "CATALOGUE",
    "Cause",
    "Deviation",
    "StepEvidence",
    "by_name",
    "rank_causes",
    "rank_causes_steps",
    "replay",
    "unit_roundoff",
]

_UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "bfloat16": 2.0**-8,
    "float16": 2.0**-11,
}


def unit_roundoff(dtype: str) -> float:
    """Unit roundoff u of a dtype name ("float64", "float32", "bfloat16", "float16")."""
    try:
        return _UNIT_ROUNDOFF[dtype]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(_UNIT_ROUNDOFF)}, got {dtype!r}") from None


def _round_to(x: F64, dtype: str) -> F64:
    """Round float64 values to ``dtype`` (round to nearest even) and return them as float64."""
    if dtype == "float64":
        return np.asarray(x, dtype=np.float64)
    if dtype == "float32":
        return np.asarray(x, dtype=np.float32).astype(np.float64)
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return np.asarray(x, dtype=np.float16).astype(np.float64)
    if dtype == "bfloat16":
        f = np.ascontiguousarray(x, dtype=np.float32)
        bits = f.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        out = rounded.astype(np.uint32).view(np.float32).astype(np.float64)
        return np.where(np.isfinite(f), out, f.astype(np.float64))
    unit_roundoff(dtype)  # raises with the list of names
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class _Ctx:
    """What a stage may look at: the configuration and the step counter actually used."""

    config: SETAdamConfig
    t: int
    bc1: float
    bc2: float


def _grad(theta: F64, g: F64, cfg: SETAdamConfig) -> F64:
    if cfg.maximize:
        g = -g
    if cfg.weight_decay != 0.0 and cfg.weight_decay_mode == "l2":
        g = g + cfg.weight_decay * theta
    return g


def _moments(m: F64, v: F64, g: F64, b1: float, b2: float) -> tuple[F64, F64]:
    return b1 * m + (1.0 - b1) * g, b2 * v + (1.0 - b2) * (g * g)


def _cos2(v: F64) -> float:
    return float(_stages.cos2(v))


def _embed(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return _stages.embed(vs, ctx.bc2, ctx.config.eps)


def _translate(w: F64, tau: float) -> F64:
    return _stages.translate(w, tau)[0]


def _decay(theta: F64, cfg: SETAdamConfig) -> F64:
    if cfg.weight_decay != 0.0 and cfg.weight_decay_mode == "decoupled":
        return theta * (1.0 - cfg.lr * cfg.weight_decay)
    return theta


def _apply(theta: F64, m: F64, wt: F64, ctx: _Ctx) -> F64:
    return theta - (m / wt) * (ctx.config.lr / ctx.bc1)


Partition = Callable[[Sequence[tuple[int, ...]], Sequence[tuple[int, ...]]], list[Index]]
"""(layers, shapes) -> index arrays into the flat concatenation of all arrays, one per layer."""


def _offsets(shapes: Sequence[tuple[int, ...]]) -> list[int]:
    out = [0]
    for s in shapes:
        out.append(out[-1] + math.prod(s))
    return out


def _layerwise(layers: Sequence[tuple[int, ...]], shapes: Sequence[tuple[int, ...]]) -> list[Index]:
    off = _offsets(shapes)
    return [
        np.concatenate([np.arange(off[a], off[a + 1], dtype=np.intp) for a in layer])
        for layer in layers
    ]


def _one_layer(layers: Sequence[tuple[int, ...]], shapes: Sequence[tuple[int, ...]]) -> list[Index]:
    return [np.arange(_offsets(shapes)[-1], dtype=np.intp)]


def _per_row(layers: Sequence[tuple[int, ...]], shapes: Sequence[tuple[int, ...]]) -> list[Index]:
    off = _offsets(shapes)
    out: list[Index] = []
    for a, s in enumerate(shapes):
        n = off[a + 1] - off[a]
        if len(s) >= 2 and s[0] > 0:
            r = n // s[0]
            out.extend(
                np.arange(off[a] + i * r, off[a] + (i + 1) * r, dtype=np.intp) for i in range(s[0])
            )
        else:
            out.append(np.arange(off[a], off[a + 1], dtype=np.intp))
    return out


@dataclass(frozen=True)
class _Recipe:
    """SET-Adam as a chain of replaceable stage functions (defaults: the definition)."""

    counter: Callable[[int], int] = lambda t: t
    config: Callable[[SETAdamConfig], SETAdamConfig] = lambda c: c
    grad: Callable[[F64, F64, SETAdamConfig], F64] = _grad
    moments: Callable[[F64, F64, F64, float, float], tuple[F64, F64]] = _moments
    scale_layers: Partition = _layerwise
    translate_layers: Partition = _layerwise
    cos2: Callable[[F64], float] = _cos2
    embed: Callable[[F64, F64, float, _Ctx], F64] = _embed
    translate: Callable[[F64, float], F64] = _translate
    decay: Callable[[F64, SETAdamConfig], F64] = _decay
    apply: Callable[[F64, F64, F64, _Ctx], F64] = _apply


class Replay(NamedTuple):
    """Result of replaying one step: parameters after, m and v after, and the stages (flat)."""

    params: tuple[F64, ...]
    m: tuple[F64, ...]
    v: tuple[F64, ...]
    stages: dict[str, tuple[F64, ...]]


def _split(flat: F64, shapes: Sequence[tuple[int, ...]]) -> tuple[F64, ...]:
    off = _offsets(shapes)
    return tuple(flat[off[i] : off[i + 1]].reshape(s) for i, s in enumerate(shapes))


def _run(
    recipe: _Recipe,
    params: Sequence[F64],
    grads: Sequence[F64],
    m0: Sequence[F64],
    v0: Sequence[F64],
    step: int,
    config: SETAdamConfig,
    layers: Sequence[tuple[int, ...]],
) -> Replay:
    cfg = recipe.config(config)
    b1, b2 = cfg.betas
    t = recipe.counter(step + 1)
    bc1, bc2 = bias_corrections(b1, b2, t)
    ctx = _Ctx(cfg, t, bc1, bc2)
    shapes = [tuple(p.shape) for p in params]
    with np.errstate(all="ignore"):
        g_eff = [recipe.grad(p, g, cfg) for p, g in zip(params, grads, strict=True)]
        mv = [recipe.moments(m, v, g, b1, b2) for m, v, g in zip(m0, v0, g_eff, strict=True)]
        m1 = [x[0] for x in mv]
        v1 = [x[1] for x in mv]

        def flat(xs: Sequence[F64]) -> F64:
            if not xs:
                return np.zeros(0)
            return np.concatenate([np.ravel(x) for x in xs]).astype(np.float64)

        v_flat, m_flat = flat(v1), flat(m1)
        vs = np.zeros_like(v_flat)
        c_el = np.ones_like(v_flat)
        w = np.zeros_like(v_flat)
        for idx in recipe.scale_layers(layers, shapes):
            if idx.size:
                c = recipe.cos2(v_flat[idx])
                vs[idx] = v_flat[idx] * c
                c_el[idx] = c
                w[idx] = recipe.embed(vs[idx], v_flat[idx], c, ctx)
        wt = np.zeros_like(w)
        for idx in recipe.translate_layers(layers, shapes):
            if idx.size:
                wt[idx] = recipe.translate(w[idx], cfg.tau)
        theta = flat([recipe.decay(np.asarray(p, dtype=np.float64), cfg) for p in params])
        after = recipe.apply(theta, m_flat, wt, ctx)
    st = {
        "grad": tuple(g_eff),
        "m": tuple(m1),
        "v": tuple(v1),
        "down_scaling": _split(vs, shapes),
        "epsilon_embedding": _split(w, shapes),
        "down_translating": _split(wt, shapes),
        "update": _split(after - flat(list(params)), shapes),
        "cos2": _split(c_el, shapes),
    }
    return Replay(_split(after, shapes), tuple(m1), tuple(v1), st)


# ----------------------------------------------------------------------------- variant stages
def _embed_eps_outside(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return np.sqrt(vs / ctx.bc2) + ctx.config.eps


def _embed_eps_bias_corrected(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return np.sqrt((vs + ctx.config.eps) / ctx.bc2)


def _embed_eps_scaled_by_c(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return np.sqrt(c * (v / ctx.bc2 + ctx.config.eps))


def _embed_eps_omitted(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return np.sqrt(vs / ctx.bc2)


def _embed_no_bc2(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return _stages.embed(vs, 1.0, ctx.config.eps)


def _embed_translate_v(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return _stages.embed(vs - ctx.config.tau * vs.min(), ctx.bc2, ctx.config.eps)


def _embed_sqrt_order(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return np.sqrt(vs + ctx.config.eps * ctx.bc2) / math.sqrt(ctx.bc2)


def _embed_scale_after_bc(vs: F64, v: F64, c: float, ctx: _Ctx) -> F64:
    return np.sqrt(c * (v / ctx.bc2) + ctx.config.eps)


def _apply_no_bc1(theta: F64, m: F64, wt: F64, ctx: _Ctx) -> F64:
    return theta - (m / wt) * ctx.config.lr


def _apply_reordered(theta: F64, m: F64, wt: F64, ctx: _Ctx) -> F64:
    return theta - (ctx.config.lr * m) / (ctx.bc1 * wt)


def _moments_adabelief(m: F64, v: F64, g: F64, b1: float, b2: float) -> tuple[F64, F64]:
    m1 = b1 * m + (1.0 - b1) * g
    d = g - m1
    return m1, b2 * v + (1.0 - b2) * (d * d)


def _moments_swapped(m: F64, v: F64, g: F64, b1: float, b2: float) -> tuple[F64, F64]:
    return _moments(m, v, g, b2, b1)


def _raw_cos2(guard: float) -> Callable[[F64], float]:
    def cos2(v: F64) -> float:
        s1 = np.sum(v)
        return float(np.divide(s1 * s1, v.size * np.sum(v * v) + guard))

    return cos2


def _cos2_eps_guard(v: F64) -> float:  # the guard is the default eps, as public ports hard-code
    return _raw_cos2(1e-8)(v)


def _cos_not_squared(v: F64) -> float:
    return math.sqrt(_stages.cos2(v))


def _cos2_one(v: F64) -> float:
    return 1.0


def _translate_mean(w: F64, tau: float) -> F64:
    return w - tau * float(np.mean(w))


def _translate_max(w: F64, tau: float) -> F64:
    return w - tau * float(np.max(w))


def _translate_none(w: F64, tau: float) -> F64:
    return np.array(w, dtype=np.float64)


def _grad_ignore_maximize(theta: F64, g: F64, cfg: SETAdamConfig) -> F64:
    return _grad(theta, g, replace(cfg, maximize=False))


def _grad_no_wd(theta: F64, g: F64, cfg: SETAdamConfig) -> F64:
    return _grad(theta, g, replace(cfg, weight_decay=0.0))


def _decay_none(theta: F64, cfg: SETAdamConfig) -> F64:
    return theta


def _swap_wd_mode(cfg: SETAdamConfig) -> SETAdamConfig:
    if cfg.weight_decay_mode == "decoupled":
        return replace(cfg, weight_decay_mode="l2")
    return replace(cfg, weight_decay_mode="decoupled")


def _decay_without_lr(theta: F64, cfg: SETAdamConfig) -> F64:
    if cfg.weight_decay != 0.0 and cfg.weight_decay_mode == "decoupled":
        return theta * (1.0 - cfg.weight_decay)
    return theta


def _tau_half(cfg: SETAdamConfig) -> SETAdamConfig:
    return replace(cfg, tau=0.5)


# ----------------------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class Deviation:
    """One known deviation: SET-Adam (or, with ``algorithm="adam"``, Adam) with exactly one thing
    changed.

    ``stage`` is the first stage (of ``setadam_ref.STAGES``) where it shows in a port that exposes
    its intermediates; ``shows_when`` the inputs under which it has any effect at all.
    ``equivalent`` marks rewrites that are mathematically equal to SET-Adam (never a cause).
    """

    name: str
    bug_class: str
    stage: str
    description: str
    shows_when: str
    equivalent: bool = False
    recipe: _Recipe = field(default_factory=_Recipe, repr=False, compare=False)
    algorithm: str = "setadam"
    adam_recipe: _AdamRecipe | None = field(default=None, repr=False, compare=False)


def _d(
    name: str, bug_class: str, stage: str, description: str, shows_when: str, **kw: Any
) -> Deviation:
    equivalent = bool(kw.pop("equivalent", False))
    return Deviation(name, bug_class, stage, description, shows_when, equivalent, _Recipe(**kw))


CATALOGUE: tuple[Deviation, ...] = (
    # epsilon embedding
    _d(
        "eps_outside_sqrt",
        "epsilon embedding",
        "epsilon_embedding",
        "eps added outside the square root, Adam style: w = sqrt(vs / bc2) + eps",
        "always; largest where vs / bc2 << eps (tiny gradients)",
        embed=_embed_eps_outside,
    ),
    _d(
        "eps_bias_corrected",
        "epsilon embedding",
        "epsilon_embedding",
        "eps bias-corrected together with v: w = sqrt((vs + eps) / bc2)",
        "early steps (bc2 far from 1) and where vs is not >> eps",
        embed=_embed_eps_bias_corrected,
    ),
    _d(
        "eps_scaled_by_c",
        "epsilon embedding",
        "epsilon_embedding",
        "eps embedded before down-scaling: w = sqrt(c * (v / bc2 + eps))",
        "layers with c < 1 where v / bc2 is not >> eps",
        embed=_embed_eps_scaled_by_c,
    ),
    _d(
        "eps_omitted",
        "epsilon embedding",
        "epsilon_embedding",
        "eps left out: w = sqrt(vs / bc2) (division by zero where v = 0)",
        "where vs / bc2 is not >> eps; Inf/NaN on zero v",
        embed=_embed_eps_omitted,
    ),
    # bias correction
    _d(
        "no_bias_correction1",
        "bias correction",
        "update",
        "lr not divided by the first bias correction 1 - beta1^t",
        "early steps (decays like beta1^t)",
        apply=_apply_no_bc1,
    ),
    _d(
        "no_bias_correction2",
        "bias correction",
        "epsilon_embedding",
        "second moment not bias-corrected: w = sqrt(vs + eps)",
        "early steps (decays like beta2^t, slowly)",
        embed=_embed_no_bc2,
    ),
    _d(
        "no_bias_correction",
        "bias correction",
        "epsilon_embedding",
        "neither moment bias-corrected",
        "early steps",
        embed=_embed_no_bc2,
        apply=_apply_no_bc1,
    ),
    # step counter
    _d(
        "step_plus_one",
        "step counter",
        "epsilon_embedding",
        "bias corrections use t + 1 (counter starts at 1 and is incremented before use)",
        "from step 1, early steps",
        counter=lambda t: t + 1,
    ),
    _d(
        "step_minus_one",
        "step counter",
        "epsilon_embedding",
        "stale step counter: bias corrections use t - 1 from step 2 on (right on step 1)",
        "from step 2 on, early steps",
        counter=lambda t: max(t - 1, 1),
    ),
    # moments
    _d(
        "adabelief_v",
        "second moment",
        "v",
        "AdaBelief-style second moment: v = EMA of (g - m)^2 instead of g^2",
        "always",
        moments=_moments_adabelief,
    ),
    _d(
        "swapped_betas",
        "moments",
        "m",
        "beta1 and beta2 swapped: m uses beta2, v uses beta1",
        "always",
        moments=_moments_swapped,
    ),
    # down-scaling
    _d(
        "cos2_guard_1e-16",
        "guard constant in cos^2",
        "down_scaling",
        "guard in the cos^2 denominator: c = S1^2 / (d * S2 + 1e-16)",
        "where d * sum(v^2) is not >> 1e-16 (tiny gradients)",
        cos2=_raw_cos2(1e-16),
    ),
    _d(
        "cos2_guard_eps",
        "guard constant in cos^2",
        "down_scaling",
        "guard in the cos^2 denominator: c = S1^2 / (d * S2 + 1e-8)",
        "where d * sum(v^2) is not >> 1e-8 (tiny and normal gradients)",
        cos2=_cos2_eps_guard,
    ),
    _d(
        "cos2_zero_layer_nan",
        "non-finite",
        "down_scaling",
        "cos^2 as S1^2 / (d * S2) with no case for an all-zero layer: 0/0 = NaN",
        "only on all-zero layers (NaN where the reference is finite)",
        cos2=_raw_cos2(0.0),
    ),
    _d(
        "cos_not_squared",
        "down-scaling",
        "down_scaling",
        "cos instead of cos^2: c = S1 / sqrt(d * S2)",
        "layers with non-constant v",
        cos2=_cos_not_squared,
    ),
    _d(
        "no_down_scaling",
        "down-scaling",
        "down_scaling",
        "down-scaling omitted (c = 1)",
        "layers with non-constant v",
        cos2=_cos2_one,
    ),
    _d(
        "global_cos2",
        "layer statistics",
        "down_scaling",
        "one cos^2 for all arrays (global instead of layerwise)",
        "more than one layer",
        scale_layers=_one_layer,
    ),
    _d(
        "global_min",
        "layer statistics",
        "down_translating",
        "one minimum of w for all arrays (global instead of layerwise)",
        "more than one layer, tau > 0",
        translate_layers=_one_layer,
    ),
    _d(
        "whole_model_one_layer",
        "layer split",
        "down_scaling",
        "the whole model is one layer (cos^2 and min global)",
        "more than one layer",
        scale_layers=_one_layer,
        translate_layers=_one_layer,
    ),
    _d(
        "per_row_layers",
        "layer split",
        "down_scaling",
        "every row of a matrix is its own layer",
        "arrays of rank >= 2",
        scale_layers=_per_row,
        translate_layers=_per_row,
    ),
    # down-translating
    _d(
        "translate_mean",
        "down-translating",
        "down_translating",
        "translation by tau * mean(w) instead of tau * min(w)",
        "tau > 0 and w not constant",
        translate=_translate_mean,
    ),
    _d(
        "translate_max",
        "down-translating",
        "down_translating",
        "translation by tau * max(w) instead of tau * min(w)",
        "tau > 0 and w not constant",
        translate=_translate_max,
    ),
    _d(
        "translate_v",
        "down-translating",
        "epsilon_embedding",
        "tau applied to v instead of w: w = sqrt((vs - tau * min vs) / bc2 + eps), no translation",
        "tau > 0",
        embed=_embed_translate_v,
        translate=_translate_none,
    ),
    _d(
        "no_down_translating",
        "down-translating",
        "down_translating",
        "down-translating omitted (wt = w)",
        "tau > 0",
        translate=_translate_none,
    ),
    _d(
        "tau_fixed_half",
        "hyperparameter ignored",
        "down_translating",
        "tau hard-coded at 0.5 (the configured tau is ignored)",
        "tau != 0.5",
        config=_tau_half,
    ),
    # gradient and weight decay
    _d(
        "maximize_ignored",
        "gradient",
        "grad",
        "maximize=True ignored (descends instead of ascending)",
        "maximize=True",
        grad=_grad_ignore_maximize,
    ),
    _d(
        "weight_decay_ignored",
        "weight decay",
        "grad",
        "weight decay ignored",
        "weight_decay > 0",
        grad=_grad_no_wd,
        decay=_decay_none,
    ),
    _d(
        "wd_mode_swapped",
        "weight decay",
        "grad",
        "wrong weight-decay mode: l2 (coupled) where decoupled is asked, or the reverse",
        "weight_decay > 0",
        config=_swap_wd_mode,
    ),
    _d(
        "decoupled_without_lr",
        "weight decay",
        "update",
        "decoupled weight decay without the lr factor: theta *= (1 - wd)",
        "weight_decay > 0, decoupled",
        decay=_decay_without_lr,
    ),
    # mathematically equivalent rewrites: documented, tested, never a cause
    _d(
        "scale_after_bias_correction",
        "equivalent",
        "epsilon_embedding",
        "c applied after the bias correction: w = sqrt(c * (v / bc2) + eps)",
        "never (equal in exact arithmetic)",
        embed=_embed_scale_after_bc,
        equivalent=True,
    ),
    _d(
        "sqrt_order",
        "equivalent",
        "epsilon_embedding",
        "w = sqrt(vs + eps * bc2) / sqrt(bc2)",
        "never (equal in exact arithmetic)",
        embed=_embed_sqrt_order,
        equivalent=True,
    ),
    _d(
        "update_reordered",
        "equivalent",
        "update",
        "update as theta - (lr * m) / (bc1 * wt)",
        "never (equal in exact arithmetic)",
        apply=_apply_reordered,
        equivalent=True,
    ),
)


# ----------------------------------------------------------------------------- Adam pipeline
def _adam_grad(theta: F64, g: F64, cfg: AdamConfig) -> F64:
    if cfg.maximize:
        g = -g
    if cfg.weight_decay != 0.0 and cfg.weight_decay_mode == "l2":
        g = g + cfg.weight_decay * theta
    return g


def _adam_vhat(v: F64, vmax0: F64 | None, bc2: float, cfg: AdamConfig) -> tuple[F64, F64 | None]:
    """(v_hat, new vmax) in the amsgrad convention of ``cfg``."""
    if not cfg.amsgrad:
        return v / bc2, None
    old = np.zeros_like(v) if vmax0 is None else vmax0
    if cfg.amsgrad_mode == "torch":
        vm = np.maximum(old, v)
        return vm / bc2, vm
    vm = np.maximum(old, v / bc2)
    return vm, vm


def _adam_denom(vhat: F64, bc2: float, cfg: AdamConfig) -> F64:
    r: F64 = np.sqrt(vhat + cfg.eps_root) + cfg.eps
    return r


def _adam_decay(theta: F64, cfg: AdamConfig) -> F64:
    if cfg.weight_decay != 0.0 and cfg.weight_decay_mode == "decoupled":
        return theta * (1.0 - cfg.lr * cfg.weight_decay)
    return theta


def _adam_apply(theta: F64, m: F64, denom: F64, lr: float, bc1: float) -> F64:
    return theta - (m / denom) * (lr / bc1)


@dataclass(frozen=True)
class _AdamRecipe:
    """Adam as a chain of replaceable stage functions (defaults: the reference's conventions)."""

    counter: Callable[[int], int] = lambda t: t
    config: Callable[[AdamConfig], AdamConfig] = lambda c: c
    grad: Callable[[F64, F64, AdamConfig], F64] = _adam_grad
    moments: Callable[[F64, F64, F64, float, float], tuple[F64, F64]] = _moments
    vhat: Callable[[F64, F64 | None, float, AdamConfig], tuple[F64, F64 | None]] = _adam_vhat
    denom: Callable[[F64, float, AdamConfig], F64] = _adam_denom
    decay: Callable[[F64, AdamConfig], F64] = _adam_decay
    apply: Callable[[F64, F64, F64, float, float], F64] = _adam_apply


def _run_adam(
    recipe: _AdamRecipe,
    params: Sequence[F64],
    grads: Sequence[F64],
    m0: Sequence[F64],
    v0: Sequence[F64],
    vmax0: Sequence[F64] | None,
    step: int,
    config: AdamConfig,
) -> Replay:
    cfg = recipe.config(config)
    b1, b2 = cfg.betas
    t = recipe.counter(step + 1)
    bc1, bc2 = bias_corrections(b1, b2, t)
    outs: dict[str, list[F64]] = {k: [] for k in ("params", "grad", "m", "v", "denom", "update")}
    with np.errstate(all="ignore"):
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            ge = recipe.grad(p, g, cfg)
            m, v = recipe.moments(m0[i], v0[i], ge, b1, b2)
            vhat, _ = recipe.vhat(v, None if vmax0 is None else vmax0[i], bc2, cfg)
            den = recipe.denom(vhat, bc2, cfg)
            after = recipe.apply(recipe.decay(p, cfg), m, den, cfg.lr, bc1)
            for k, x in (("params", after), ("grad", ge), ("m", m), ("v", v), ("denom", den)):
                outs[k].append(x)
            outs["update"].append(after - p)
    st = {k: tuple(v) for k, v in outs.items() if k != "params"}
    return Replay(tuple(outs["params"]), tuple(outs["m"]), tuple(outs["v"]), st)


def _adam_eps_inside(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, eps_root=cfg.eps_root + cfg.eps, eps=0.0)


def _adam_eps_root_ignored(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, eps_root=0.0)


def _adam_amsgrad_swapped(cfg: AdamConfig) -> AdamConfig:
    if cfg.amsgrad_mode == "torch":
        return replace(cfg, amsgrad_mode="optax")
    return replace(cfg, amsgrad_mode="torch")


def _adam_amsgrad_ignored(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, amsgrad=False)


def _adam_no_maximize(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, maximize=False)


def _adam_no_wd(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, weight_decay=0.0)


def _adam_wd_swapped(cfg: AdamConfig) -> AdamConfig:
    if cfg.weight_decay_mode == "decoupled":
        return replace(cfg, weight_decay_mode="l2")
    return replace(cfg, weight_decay_mode="decoupled")


def _adam_decay_without_lr(theta: F64, cfg: AdamConfig) -> F64:
    if cfg.weight_decay != 0.0 and cfg.weight_decay_mode == "decoupled":
        return theta * (1.0 - cfg.weight_decay)
    return theta


def _adam_denom_no_bc2(vhat: F64, bc2: float, cfg: AdamConfig) -> F64:
    return _adam_denom(vhat * bc2, bc2, cfg)


def _adam_denom_torch_order(vhat: F64, bc2: float, cfg: AdamConfig) -> F64:
    # torch.optim.Adam: sqrt(v) / sqrt(bc2) + eps, with v = v_hat * bc2
    r: F64 = np.sqrt(vhat * bc2 + cfg.eps_root * bc2) / math.sqrt(bc2) + cfg.eps
    return r


def _adam_apply_no_bc1(theta: F64, m: F64, denom: F64, lr: float, bc1: float) -> F64:
    return theta - (m / denom) * lr


def _adam_apply_reordered(theta: F64, m: F64, denom: F64, lr: float, bc1: float) -> F64:
    return theta - (lr * m) / (bc1 * denom)


def _a(
    name: str, bug_class: str, stage: str, description: str, shows_when: str, **kw: Any
) -> Deviation:
    equivalent = bool(kw.pop("equivalent", False))
    return Deviation(
        name,
        bug_class,
        stage,
        description,
        shows_when,
        equivalent,
        _Recipe(),
        "adam",
        _AdamRecipe(**kw),
    )


ADAM_CATALOGUE: tuple[Deviation, ...] = (
    _a(
        "adam_eps_inside_sqrt",
        "epsilon placement",
        "denom",
        "eps inside the square root: denom = sqrt(v_hat + eps) (optax eps_root convention)",
        "where v_hat is not >> eps^2 (tiny gradients)",
        config=_adam_eps_inside,
    ),
    _a(
        "adam_eps_root_ignored",
        "epsilon placement",
        "denom",
        "eps_root ignored (denom = sqrt(v_hat) + eps)",
        "eps_root > 0",
        config=_adam_eps_root_ignored,
    ),
    _a(
        "adam_no_bias_correction1",
        "bias correction",
        "update",
        "lr not divided by 1 - beta1^t",
        "early steps",
        apply=_adam_apply_no_bc1,
    ),
    _a(
        "adam_no_bias_correction2",
        "bias correction",
        "denom",
        "v not bias-corrected: denom = sqrt(v) + eps",
        "early steps",
        denom=_adam_denom_no_bc2,
    ),
    _a(
        "adam_step_plus_one",
        "step counter",
        "denom",
        "bias corrections use t + 1",
        "from step 1, early steps",
        counter=lambda t: t + 1,
    ),
    _a(
        "adam_step_minus_one",
        "step counter",
        "denom",
        "stale step counter: t - 1 from step 2 on",
        "from step 2 on, early steps",
        counter=lambda t: max(t - 1, 1),
    ),
    _a(
        "adam_adabelief_v",
        "second moment",
        "v",
        "AdaBelief-style v = EMA of (g - m)^2",
        "always",
        moments=_moments_adabelief,
    ),
    _a(
        "adam_swapped_betas",
        "moments",
        "m",
        "beta1 and beta2 swapped between m and v",
        "always",
        moments=_moments_swapped,
    ),
    _a(
        "adam_amsgrad_mode_swapped",
        "amsgrad",
        "vmax",
        "amsgrad maximum over raw v where bias-corrected v is asked (torch vs optax), or reverse",
        "amsgrad, once v_hat decreases",
        config=_adam_amsgrad_swapped,
    ),
    _a(
        "adam_amsgrad_ignored",
        "amsgrad",
        "vmax",
        "amsgrad=True ignored",
        "amsgrad, once v decreases",
        config=_adam_amsgrad_ignored,
    ),
    _a(
        "adam_maximize_ignored",
        "gradient",
        "grad",
        "maximize=True ignored",
        "maximize=True",
        config=_adam_no_maximize,
    ),
    _a(
        "adam_weight_decay_ignored",
        "weight decay",
        "grad",
        "weight decay ignored",
        "weight_decay > 0",
        config=_adam_no_wd,
    ),
    _a(
        "adam_wd_mode_swapped",
        "weight decay",
        "grad",
        "l2 where decoupled is asked (Adam vs AdamW), or the reverse",
        "weight_decay > 0",
        config=_adam_wd_swapped,
    ),
    _a(
        "adam_decoupled_without_lr",
        "weight decay",
        "update",
        "decoupled weight decay without the lr factor: theta *= (1 - wd)",
        "weight_decay > 0, decoupled",
        decay=_adam_decay_without_lr,
    ),
    _a(
        "adam_torch_denom_order",
        "equivalent",
        "denom",
        "denom = sqrt(v) / sqrt(bc2) + eps (torch.optim's order)",
        "never (equal in exact arithmetic)",
        denom=_adam_denom_torch_order,
        equivalent=True,
    ),
    _a(
        "adam_update_reordered",
        "equivalent",
        "update",
        "update as theta - (lr * m) / (bc1 * denom)",
        "never (equal in exact arithmetic)",
        apply=_adam_apply_reordered,
        equivalent=True,
    ),
)

_BASE = _Recipe()


def by_name(name: str) -> Deviation:
    """The catalogue entry called ``name`` (KeyError listing the names otherwise)."""
    for d in (*CATALOGUE, *ADAM_CATALOGUE):
        if d.name == name:
            return d
    known = [d.name for d in (*CATALOGUE, *ADAM_CATALOGUE)]
    raise KeyError(f"no deviation {name!r}; known: {known}")


def _f64(xs: Sequence[Any], dtype: str) -> tuple[F64, ...]:
    return tuple(_round_to(np.asarray(x, dtype=np.float64), dtype) for x in xs)


def replay(
    deviation: Deviation | None,
    params: Sequence[Any],
    grads: Sequence[Any],
    state: Any,
    config: Config,
    layers: Sequence[Sequence[int]] | None = None,
    dtype: str = "float64",
) -> Replay:
    """One step of ``deviation`` (``None``: the algorithm itself) from ``params``/``grads``/``state``.

    ``config`` is a ``SETAdamConfig`` (SET-Adam entries) or an ``AdamConfig`` (Adam entries,
    ``algorithm="adam"``). ``state`` is a ``setadam_ref.State`` (or anything with ``step``, ``m``,
    ``v`` and, for amsgrad, ``vmax``). Inputs are first rounded to ``dtype``, as the port saw them;
    the step itself is computed in float64.
    """
    if isinstance(config, AdamConfig):
        arecipe = _AdamRecipe() if deviation is None else deviation.adam_recipe
        if arecipe is None:
            raise ValueError(f"{deviation.name if deviation else None} is not an Adam deviation")
        vmax = getattr(state, "vmax", None)
        return _run_adam(
            arecipe,
            _f64(params, dtype),
            _f64(grads, dtype),
            _f64(state.m, dtype),
            _f64(state.v, dtype),
            None if vmax is None else _f64(vmax, dtype),
            int(state.step),
            config,
        )
    if deviation is not None and deviation.algorithm != "setadam":
        raise ValueError(f"{deviation.name} is an Adam deviation; config is SET-Adam")
    lay = _layers(layers, len(params))
    recipe = _BASE if deviation is None else deviation.recipe
    return _run(
        recipe,
        _f64(params, dtype),
        _f64(grads, dtype),
        _f64(state.m, dtype),
        _f64(state.v, dtype),
        int(state.step),
        config,
        lay,
    )


def _layers(layers: Sequence[Sequence[int]] | None, n: int) -> tuple[tuple[int, ...], ...]:
    if layers is None:
        return tuple((i,) for i in range(n))
    return tuple(tuple(int(a) for a in layer) for layer in layers)


# ----------------------------------------------------------------------------- ranking
@dataclass(frozen=True)
class Cause:
    """A catalogued deviation that explains a port's output better than the reference.

    ``distance``: worst error of the deviation's replay against the port divided by the worst
    error of the reference against the port (errors measured in units of the step's update, over
    the parameters and, where given, m and v; floored at the dtype's rounding level): 0 is a
    perfect explanation, 1 no better than the reference. ``first_step``: the first step (1-based
    count ``t``) at which the replay differs from the reference, when known.
    """

    name: str
    description: str
    distance: float
    bug_class: str = ""
    stage: str = ""
    first_step: int | None = None


class StepEvidence(NamedTuple):
    """What a port did in one re-synced step: inputs (as given to the port) and its outputs.

    ``port_m``/``port_v``: the port's moments after the step, when it exposes them.
    """

    params: Sequence[Any]
    grads: Sequence[Any]
    state: Any
    port_params_after: Sequence[Any]
    port_m: Sequence[Any] | None = None
    port_v: Sequence[Any] | None = None


_CLEARLY_BETTER = 0.5
#: rounding floors (multiples of the dtype's unit roundoff u): the port and the reference each
#: round theta_t once (u |theta| each), the update carries a few roundings, m and v a few more
_THETA_ROUNDINGS = 2.0
_UPDATE_ROUNDINGS = 32.0
_STATE_ROUNDINGS = 32.0


def _max_abs_diff(a: Sequence[F64], b: Sequence[F64]) -> float:
    """max |a - b| over all entries; +inf where exactly one side is non-finite (or Inf differs)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.size == 0:
            continue
        fx, fy = np.isfinite(x), np.isfinite(y)
        if np.any(fx != fy):
            return math.inf
        both_nan = np.isnan(x) & np.isnan(y)
        inf_same = ~fx & ~fy & ~both_nan & (x == y)
        mismatched = ~fx & ~fy & ~both_nan & ~inf_same
        if np.any(mismatched):
            return math.inf
        if np.any(fx):
            worst = max(worst, float(np.max(np.abs(x[fx] - y[fx]))))
    return worst


def _max_abs(a: Sequence[F64]) -> float:
    vals = [float(np.max(np.abs(x[np.isfinite(x)]))) for x in a if np.any(np.isfinite(x))]
    return max(vals, default=0.0)


class _Channel(NamedTuple):
    port: tuple[F64, ...]
    scale: float  # divide errors by this (the size of the step's update, or of m / v)
    floor: float  # rounding level, in the same units as the scaled errors


def _channels(ev: StepEvidence, ref: Replay, before: tuple[F64, ...], dtype: str) -> list[_Channel]:
    u = unit_roundoff(dtype)
    port_p = tuple(np.asarray(x, dtype=np.float64) for x in ev.port_params_after)
    upd = _max_abs([r - p for r, p in zip(ref.params, before, strict=True)])
    big = max(_max_abs(ref.params), _max_abs(before))
    scale = upd if upd > 0.0 else max(big, 1.0)
    floor = u * (_THETA_ROUNDINGS * big + _UPDATE_ROUNDINGS * upd) / scale
    chans = [_Channel(port_p, scale, floor)]
    for port_x, ref_x in ((ev.port_m, ref.m), (ev.port_v, ref.v)):
        if port_x is not None:
            px = tuple(np.asarray(x, dtype=np.float64) for x in port_x)
            s = _max_abs(ref_x)
            chans.append(_Channel(px, s if s > 0.0 else 1.0, _STATE_ROUNDINGS * u))
    return chans


def _channel_errors(rep: Replay, ev: StepEvidence, chans: list[_Channel]) -> dict[str, float]:
    """Error of ``rep`` against the port per channel ("params", "m", "v"), in units of each
    channel's rounding floor (so 1.0 means: indistinguishable from rounding)."""
    outs: list[tuple[str, tuple[F64, ...]]] = [("params", rep.params)]
    if ev.port_m is not None:
        outs.append(("m", rep.m))
    if ev.port_v is not None:
        outs.append(("v", rep.v))
    out: dict[str, float] = {}
    for (name, arrays), ch in zip(outs, chans, strict=True):
        err = _max_abs_diff(arrays, ch.port) / ch.scale
        out[name] = max(err, ch.floor) / ch.floor
    return out


def _merge(into: dict[str, float], new: dict[str, float]) -> None:
    for k, x in new.items():
        into[k] = max(into.get(k, 0.0), x)


def _replays_differ(a: Replay, b: Replay, chans: list[_Channel]) -> bool:
    ch = chans[0]
    return _max_abs_diff(a.params, b.params) / ch.scale > ch.floor


def rank_causes_steps(
    evidence: Sequence[StepEvidence],
    config: Config,
    layers: Sequence[Sequence[int]] | None,
    dtype: str,
) -> list[Cause]:
    """Rank the catalogue against several re-synced steps of one port (best first).

    For every deviation and step, the error of its replay against the port is measured in units
    of the rounding floor; the deviation's score is its worst error over all steps and channels
    divided by the reference's. A deviation that differs where the port agrees with the reference
    scores badly, so step-onset bugs are told apart. The port's m and v count where they agree
    with the reference or some deviation explains them, and are left out where nothing does (a
    port that keeps its state in another convention). Only deviations with distance < 0.5 (clearly
    better than the reference) are returned; an empty list when the port agrees with the
    reference everywhere (nothing to explain) or when no catalogued deviation explains the
    output. An ``AdamConfig`` is ranked against ``ADAM_CATALOGUE``, a ``SETAdamConfig`` against
    ``CATALOGUE``.
    """
    if not evidence:
        return []
    catalogue = ADAM_CATALOGUE if isinstance(config, AdamConfig) else CATALOGUE
    ref_err: dict[str, float] = {}
    dev_err: dict[str, dict[str, float]] = {}
    onset: dict[str, int | None] = {}
    candidates = [d for d in catalogue if not d.equivalent]
    for ev in evidence:
        before = _f64(ev.params, dtype)
        ref = replay(None, ev.params, ev.grads, ev.state, config, layers, dtype)
        chans = _channels(ev, ref, before, dtype)
        _merge(ref_err, _channel_errors(ref, ev, chans))
        t = int(ev.state.step) + 1
        for d in candidates:
            rep = replay(d, ev.params, ev.grads, ev.state, config, layers, dtype)
            _merge(dev_err.setdefault(d.name, {}), _channel_errors(rep, ev, chans))
            if onset.get(d.name) is None and _replays_differ(rep, ref, chans):
                onset[d.name] = t
            onset.setdefault(d.name, None)
    # The parameters always count. A state channel (m, v) counts where the port's state agrees
    # with the reference or some deviation explains it; where nothing does, the port keeps its
    # state in another convention (a third-party port may), and that channel would only blur
    # the ranking.
    keep = ["params"]
    for ch in ("m", "v"):
        if ch not in ref_err:
            continue
        best = min((e.get(ch, math.inf) for e in dev_err.values()), default=math.inf)
        if not ref_err[ch] > 1.0 or best < _CLEARLY_BETTER * ref_err[ch]:
            keep.append(ch)
    ref_worst = max(ref_err.get(ch, 0.0) for ch in keep)
    dev_worst = {n: max(e.get(ch, 0.0) for ch in keep) for n, e in dev_err.items()}
    if not ref_worst > 1.0:  # the port agrees with the reference up to rounding
        return []
    causes = []
    for d in candidates:
        score = dev_worst[d.name]
        dist = (
            score / ref_worst
            if math.isfinite(ref_worst)
            else (0.0 if math.isfinite(score) else math.inf)
        )
        if math.isnan(dist) or dist >= _CLEARLY_BETTER:
            continue
        causes.append(Cause(d.name, d.description, dist, d.bug_class, d.stage, onset[d.name]))
    causes.sort(key=lambda c: (c.distance, c.name))
    return causes


def rank_causes(
    params: Sequence[Any],
    grads: Sequence[Any],
    state: Any,
    config: Config,
    layers: Sequence[Sequence[int]] | None,
    port_params_after: Sequence[Any],
    dtype: str = "float64",
    *,
    port_m: Sequence[Any] | None = None,
    port_v: Sequence[Any] | None = None,
) -> list[Cause]:
    """Catalogued deviations that explain one re-synced port step clearly better than the
    reference, best first (see :func:`rank_causes_steps`).

    ``params``, ``grads``, ``state`` (a ``setadam_ref.State``): the step's inputs as given to the
    port (they are rounded to ``dtype`` here, as the port saw them); ``port_params_after``: the
    port's parameters after the step; ``port_m``/``port_v``: its moments, if it exposes them.
    """
    ev = StepEvidence(params, grads, state, port_params_after, port_m, port_v)
    return rank_causes_steps([ev], config, layers, dtype)
