"""The planted mistakes of the outside-style ports: one entry per catalogue entry, as hooks of
``outside_math``, each written the way the mistake would appear in a port.

``SETADAM_BUGS[name]`` / ``ADAM_BUGS[name]``: the hooks the mistake ``name`` (the catalogue
entry the harness should name) replaces. Written from the mathematics, never from the reference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import outside_math as O
from .outside_math import Frame, Hook, Segment


def _f32(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float32))


# ----------------------------------------------------------------------------- shared mistakes
def _advance_plus_one(t: int) -> tuple[int, int]:
    return t + 1, t + 2


def _advance_stale(t: int) -> tuple[int, int]:
    return t + 1, max(t, 1)  # incremented after use (and clamped so that step 1 works)


def _advance_frozen(t: int) -> tuple[int, int]:
    t = 1 if t == 0 else t  # a misplaced `if`: the counter only moves on the first step
    return t, t


def _advance_twice(t: int) -> tuple[int, int]:
    return t + 2, t + 2  # incremented in the m branch and again in the v branch


def _bias_f32(f: Frame) -> tuple[float, float]:
    t = torch.tensor(float(f.t), dtype=torch.float32)  # a float32 step tensor
    b1 = torch.tensor(f.hp.b1, dtype=torch.float32)
    b2 = torch.tensor(f.hp.b2, dtype=torch.float32)
    return float(1 - b1**t), float(1 - b2**t)


def _bias_swapped(f: Frame) -> tuple[float, float]:
    return 1.0 - f.hp.b2**f.t, 1.0 - f.hp.b1**f.t


def _grad_no_maximize(f: Frame, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    if f.hp.weight_decay and not f.hp.decoupled:
        g = g + f.hp.weight_decay * p
    return g, g


def _grad_no_decay(f: Frame, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    return (-g, -g) if f.hp.maximize else (g, g)


def _grad_swapped_mode(f: Frame, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    g = -g if f.hp.maximize else g
    if f.hp.weight_decay and f.hp.decoupled:  # l2 where decoupled was asked
        g = g + f.hp.weight_decay * p
    return g, g


def _decay_swapped_mode(f: Frame, p: Tensor) -> None:
    if f.hp.weight_decay and not f.hp.decoupled:
        p.mul_(1 - f.hp.lr * f.hp.weight_decay)


def _decay_none(f: Frame, p: Tensor) -> None:
    return None


def _decay_without_lr(f: Frame, p: Tensor) -> None:
    if f.hp.weight_decay and f.hp.decoupled:
        p.mul_(1 - f.hp.weight_decay)


def _grad_l2_m_only(f: Frame, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    g = -g if f.hp.maximize else g
    if f.hp.weight_decay and not f.hp.decoupled:
        return g + f.hp.weight_decay * p, g
    return g, g


def _moments_adabelief(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    m.mul_(f.hp.b1).add_(gm, alpha=1 - f.hp.b1)
    r = gv - m
    v.mul_(f.hp.b2).addcmul_(r, r, value=1 - f.hp.b2)


def _moments_swapped(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    m.mul_(f.hp.b2).add_(gm, alpha=1 - f.hp.b2)
    v.mul_(f.hp.b1).addcmul_(gv, gv, value=1 - f.hp.b1)


def _moments_eps_in_place(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    O.moments(f, m, v, gm, gv)
    v.add_(f.hp.eps)


def _moments_corrected_in_place(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    O.moments(f, m, v, gm, gv)
    m.div_(f.bc1)


def _moments_betas_f32(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    b1 = torch.tensor(f.hp.b1, dtype=torch.float32).item()
    b2 = torch.tensor(f.hp.b2, dtype=torch.float32).item()
    m.mul_(b1).add_(gm, alpha=1 - b1)
    v.mul_(b2).addcmul_(gv, gv, value=1 - b2)


def _apply_lr(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
    p.sub_(f.hp.lr * m / denom)


def _apply_step_f32(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
    step = torch.tensor(f.hp.lr / f.bc1, dtype=torch.float32).item()
    p.sub_(step * m / denom)


def _apply_twice(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
    step_size = f.hp.lr * math.sqrt(f.bc2) / f.bc1  # folded in, and m/v still corrected
    p.sub_(step_size * (m / f.bc1) / denom)


def _apply_guard(g: float) -> Hook:
    def apply(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
        p.sub_(f.hp.lr / f.bc1 * m / (denom + g))

    return apply


def _apply_tf(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
    p.sub_(f.hp.lr * math.sqrt(f.bc2) / f.bc1 * m / denom)


# ----------------------------------------------------------------------------- (S)
def _cos2_sums(form: Any, *, zero: bool = True) -> Hook:
    def cos2(f: Frame, v: Tensor, seg: Segment) -> Tensor:
        s1, s2 = v.sum(), (v * v).sum()
        if zero and float(s2) == 0.0:
            return torch.ones((), dtype=v.dtype)
        return form(s1, s2, v.numel())  # type: ignore[no-any-return]

    return cos2


def _cos2_cosine_similarity(f: Frame, v: Tensor, seg: Segment) -> Tensor:
    ones = torch.ones_like(v)
    return F.cosine_similarity(v, ones, dim=0, eps=1e-8) ** 2


def _cos2_var(f: Frame, v: Tensor, seg: Segment) -> Tensor:
    mu = v.mean()
    return mu**2 / (mu**2 + v.var())  # torch.var: unbiased (d - 1) by default


def _cos2_global(f: Frame, v: Tensor, seg: Segment) -> Tensor:
    assert f.v is not None
    return O.cos2(f, f.v, seg)


def _cos2_global_count(f: Frame, v: Tensor, seg: Segment) -> Tensor:
    assert f.v is not None
    s2 = (v * v).sum()
    if float(s2) == 0.0:
        return torch.ones((), dtype=v.dtype)
    return v.sum() ** 2 / (f.v.numel() * s2)


def _cos2_of(which: str) -> Hook:
    def cos2(f: Frame, v: Tensor, seg: Segment) -> Tensor:
        src = {"g": f.g, "prev": f.v_prev}[which]
        assert src is not None
        x = src[seg[0] : seg[1]]
        return O.cos2(f, x * x if which == "g" else x, seg)

    return cos2


def _cos2_sqrt(f: Frame, v: Tensor, seg: Segment) -> Tensor:
    r = torch.sqrt(v)
    s2 = v.sum()
    if float(s2) == 0.0:
        return torch.ones((), dtype=v.dtype)
    return r.sum() ** 2 / (v.numel() * s2)


def _one_layer(f: Frame) -> list[Segment]:
    return [(0, sum(int(torch.Size(s).numel()) for s in f.shapes))]


def _rows(f: Frame) -> list[Segment]:
    out: list[Segment] = []
    start = 0
    for s in f.shapes:
        n = int(torch.Size(s).numel())
        if len(s) >= 2 and s[0] > 0:
            step = n // s[0]
            out.extend((start + k * step, start + (k + 1) * step) for k in range(s[0]))
        else:
            out.append((start, start + n))
        start += n
    return out


# ----------------------------------------------------------------------------- (E)
def _embed(fn: Any) -> Hook:
    def embed(f: Frame, vs: Tensor, v: Tensor, c: Tensor) -> Tensor:
        return fn(f, vs, v, c)  # type: ignore[no-any-return]

    return embed


def _embed_bias_f32(f: Frame, vs: Tensor, v: Tensor, c: Tensor) -> Tensor:
    return torch.sqrt(vs / f.bc2 + f.hp.eps)


def _embed_translated_v(f: Frame, vs: Tensor, v: Tensor, c: Tensor) -> Tensor:
    return torch.sqrt((vs - f.hp.tau * vs.min()) / f.bc2 + f.hp.eps)


# ----------------------------------------------------------------------------- (T)
def _min_of(fn: Any) -> Hook:
    def layer_min(f: Frame, w: Tensor, seg: Segment, c: Tensor) -> Tensor:
        return fn(f, w, seg, c)  # type: ignore[no-any-return]

    return layer_min


def _min_nonzero(f: Frame, w: Tensor, seg: Segment, c: Tensor) -> Tensor:
    assert f.v is not None
    live = w[f.v[seg[0] : seg[1]] > 0]
    return live.min() if live.numel() else w.min()


def _min_unscaled(f: Frame, w: Tensor, seg: Segment, c: Tensor) -> Tensor:
    assert f.v is not None
    return torch.sqrt(f.v[seg[0] : seg[1]].min() / f.bc2 + f.hp.eps)


def _min_stale(f: Frame, w: Tensor, seg: Segment, c: Tensor) -> Tensor:
    cache = f.extra.setdefault("w_min", {})
    prev = cache.get(seg, torch.zeros((), dtype=w.dtype))
    cache[seg] = w.min().clone()
    return prev  # type: ignore[no-any-return]


def _translate_none(f: Frame, w: Tensor, w_min: Tensor) -> Tensor:
    return w


def _translate_half(f: Frame, w: Tensor, w_min: Tensor) -> Tensor:
    return w - 0.5 * w_min


def _sq(x: Tensor) -> Tensor:
    return x * x


_SIZES = (("1e-20", 1e-20), ("1e-16", 1e-16), ("eps", 1e-8))


def _sum_sq_guard(g: float) -> Hook:
    """The guard added to sum(v^2) itself (the SET-Adam authors' port: g = 1e-20)."""
    return _cos2_sums(lambda s1, s2, d: s1 * s1 / (d * (s2 + g)))


SETADAM_BUGS: dict[str, dict[str, Hook]] = {
    "eps_outside_sqrt": {"embed": _embed(lambda f, vs, v, c: torch.sqrt(vs / f.bc2) + f.hp.eps)},
    "eps_bias_corrected": {"embed": _embed(lambda f, vs, v, c: torch.sqrt((vs + f.hp.eps) / f.bc2))},
    "eps_scaled_by_c": {"embed": _embed(lambda f, vs, v, c: torch.sqrt(c * (v / f.bc2 + f.hp.eps)))},
    "eps_omitted": {"embed": _embed(lambda f, vs, v, c: torch.sqrt(vs / f.bc2))},
    "no_bias_correction1": {"apply": _apply_lr},
    "no_bias_correction2": {"embed": _embed(lambda f, vs, v, c: torch.sqrt(vs + f.hp.eps))},
    "no_bias_correction": {
        "embed": _embed(lambda f, vs, v, c: torch.sqrt(vs + f.hp.eps)), "apply": _apply_lr,
    },
    "step_plus_one": {"advance": _advance_plus_one},
    "step_minus_one": {"advance": _advance_stale},
    "step_frozen": {"advance": _advance_frozen},
    "adabelief_v": {"moments": _moments_adabelief},
    "swapped_betas": {"moments": _moments_swapped},
    "cos2_guard_1e-16": {"cos2": _cos2_sums(lambda s1, s2, d: s1 * s1 / (d * s2 + 1e-16), zero=False)},
    "cos2_guard_eps": {"cos2": _cos2_sums(lambda s1, s2, d: s1 * s1 / (d * s2 + 1e-8), zero=False)},
    "cos2_guard_1e-20": {"cos2": _cos2_sums(lambda s1, s2, d: s1 * s1 / (d * s2 + 1e-20), zero=False)},
    "cos2_zero_layer_nan": {"cos2": _cos2_sums(lambda s1, s2, d: s1 * s1 / (d * s2), zero=False)},
    "cos_not_squared": {"cos2": _cos2_sums(lambda s1, s2, d: s1 / torch.sqrt(d * s2))},
    "no_down_scaling": {"cos2": lambda f, v, seg: torch.ones((), dtype=v.dtype)},
    "global_cos2": {"cos2": _cos2_global},
    "global_min": {"translate_layers": _one_layer},
    "whole_model_one_layer": {"layers": _one_layer, "translate_layers": _one_layer},
    "per_row_layers": {"layers": _rows, "translate_layers": _rows},
    "translate_mean": {"layer_min": _min_of(lambda f, w, seg, c: w.mean())},
    "translate_max": {"layer_min": _min_of(lambda f, w, seg, c: w.max())},
    "translate_v": {"embed": _embed_translated_v, "translate": _translate_none},
    "no_down_translating": {"translate": _translate_none},
    "tau_fixed_half": {"translate": _translate_half},
    "maximize_ignored": {"grad": _grad_no_maximize},
    "weight_decay_ignored": {"grad": _grad_no_decay, "decay": _decay_none},
    "wd_mode_swapped": {"grad": _grad_swapped_mode, "decay": _decay_swapped_mode},
    "decoupled_without_lr": {"decay": _decay_without_lr},
    **{f"cos2_sum_sq_guard_{s}": {"cos2": _sum_sq_guard(g)} for s, g in _SIZES},
    "cos2_sum_guard_1e-16": {"cos2": _cos2_sums(lambda s1, s2, d: _sq(s1 + 1e-16) / (d * s2))},
    "cos2_sum_guard_eps": {"cos2": _cos2_sums(lambda s1, s2, d: _sq(s1 + 1e-8) / (d * s2))},
    "cos2_norm_clamp_eps": {"cos2": _cos2_cosine_similarity},
    "w_guard_eps": {"embed": _embed(lambda f, vs, v, c: torch.sqrt(vs / f.bc2 + f.hp.eps) + f.hp.eps)},
    "w_guard_1e-16": {"embed": _embed(lambda f, vs, v, c: torch.sqrt(vs / f.bc2 + f.hp.eps) + 1e-16)},
    "sqrt_arg_guard_1e-16": {
        "embed": _embed(lambda f, vs, v, c: torch.sqrt(vs / f.bc2 + f.hp.eps + 1e-16))
    },
    "translate_min_guard_eps": {"layer_min": _min_of(lambda f, w, seg, c: w.min() + f.hp.eps)},
    "update_guard_eps": {"apply": _apply_guard(1e-8)},
    "update_guard_1e-16": {"apply": _apply_guard(1e-16)},
    "bias_corrections_float32": {"bias": _bias_f32},
    "step_size_float32": {"apply": _apply_step_f32},
    "betas_float32": {"moments": _moments_betas_f32},
    "v_eps_in_place": {"moments": _moments_eps_in_place},
    "m_bias_corrected_in_place": {"moments": _moments_corrected_in_place, "apply": _apply_lr},
    "l2_in_m_only": {"grad": _grad_l2_m_only},
    "step_counted_twice": {"advance": _advance_twice},
    "bias_corrections_swapped": {"bias": _bias_swapped},
    "bias_correction_twice": {"apply": _apply_twice},
    "cos2_unbiased_var": {"cos2": _cos2_var},
    "cos2_global_count": {"cos2": _cos2_global_count},
    "cos2_of_grad_sq": {"cos2": _cos2_of("g")},
    "cos2_of_previous_v": {"cos2": _cos2_of("prev")},
    "cos2_of_sqrt_v": {"cos2": _cos2_sqrt},
    "tf_style_eps": {
        "embed": _embed(lambda f, vs, v, c: torch.sqrt(vs) + f.hp.eps), "apply": _apply_tf,
    },
    "min_over_nonzero": {"layer_min": _min_nonzero},
    "min_before_scaling": {"layer_min": _min_unscaled},
    "stale_min": {"layer_min": _min_stale},
    "adam_not_setadam": {  # plain Adam under SET-Adam's name: no S, eps outside, no T
        "cos2": lambda f, v, seg: torch.ones((), dtype=v.dtype),
        "embed": _embed(lambda f, vs, v, c: torch.sqrt(vs / f.bc2) + f.hp.eps),
        "translate": _translate_none,
    },
}  # fmt: skip


# ----------------------------------------------------------------------------- Adam mistakes
def _vmax_optax(f: Frame, v: Tensor, v_max: Tensor | None) -> Tensor:
    """The maximum over bias-corrected v (optax's convention), where torch's is asked."""
    if v_max is None:
        return v
    torch.maximum(v_max, v / f.bc2, out=v_max)
    return v_max * f.bc2


def _vmax_ignored(f: Frame, v: Tensor, v_max: Tensor | None) -> Tensor:
    return v


def _vmax_always(f: Frame, v: Tensor, v_max: Tensor | None) -> Tensor:
    """amsgrad kept on whatever the flag says (the container keeps the maximum)."""
    store = f.extra.setdefault("vmax", [])
    i = f.extra["index"]
    if len(store) <= i:
        store.append(torch.zeros_like(v))
    torch.maximum(store[i], v, out=store[i])
    return store[i]  # type: ignore[no-any-return]


def _denom(fn: Any) -> Hook:
    def denom(f: Frame, v: Tensor) -> Tensor:
        return fn(f, v)  # type: ignore[no-any-return]

    return denom


def _grad_keep(f: Frame, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    gm, gv = O.grad(f, p, g)
    f.extra["g"] = gm
    return gm, gv


def _apply_nesterov(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
    g = f.extra["g"]
    bc1_next = 1.0 - f.hp.b1 ** (f.t + 1)
    m_hat = f.hp.b1 * m / bc1_next + (1 - f.hp.b1) * g / f.bc1
    p.sub_(f.hp.lr * m_hat / denom)


def _moments_belief(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    m.mul_(f.hp.b1).add_(gm, alpha=1 - f.hp.b1)
    r = gv - m
    v.mul_(f.hp.b2).addcmul_(r, r, value=1 - f.hp.b2).add_(f.hp.eps)


def _denom_belief(f: Frame, v: Tensor) -> Tensor:
    return torch.sqrt(v) / math.sqrt(f.bc2) + f.hp.eps


def _qh_weight(beta: float, t: int) -> float:
    """1 / w_t with w_t = beta w_{t-1} + 1 kept as a float32 tensor (QHAdam's bias correction)."""
    w = torch.zeros((), dtype=torch.float32)
    for _ in range(t):
        w.mul_(beta).add_(1.0)
    return float(w.reciprocal())


def _moments_corrected_lerp(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    m.lerp_(gm, _qh_weight(f.hp.b1, f.t))
    v.lerp_(gv * gv, _qh_weight(f.hp.b2, f.t))


def _moments_lion(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    f.extra["c"] = m * f.hp.b1 + gm * (1 - f.hp.b1)
    m.mul_(f.hp.b2).add_(gm, alpha=1 - f.hp.b2)


def _apply_lion(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
    p.sub_(f.hp.lr * torch.sign(f.extra["c"]))


ADAM_BUGS: dict[str, dict[str, Hook]] = {
    "adam_eps_inside_sqrt": {"denom": _denom(lambda f, v: torch.sqrt(v / f.bc2 + f.hp.eps))},
    "adam_eps_root_ignored": {"denom": _denom(lambda f, v: torch.sqrt(v / f.bc2) + f.hp.eps)},
    "adam_no_bias_correction1": {"apply": _apply_lr},
    "adam_no_bias_correction2": {"denom": _denom(lambda f, v: torch.sqrt(v + f.hp.eps_root) + f.hp.eps)},
    "adam_step_plus_one": {"advance": _advance_plus_one},
    "adam_step_minus_one": {"advance": _advance_stale},
    "adam_step_frozen": {"advance": _advance_frozen},
    "adam_adabelief_v": {"moments": _moments_adabelief},
    "adam_swapped_betas": {"moments": _moments_swapped},
    "adam_amsgrad_mode_swapped": {"vmax": _vmax_optax},
    "adam_amsgrad_ignored": {"vmax": _vmax_ignored},
    "adam_maximize_ignored": {"grad": _grad_no_maximize},
    "adam_weight_decay_ignored": {"grad": _grad_no_decay, "decay": _decay_none},
    "adam_wd_mode_swapped": {"grad": _grad_swapped_mode, "decay": _decay_swapped_mode},
    "adam_decoupled_without_lr": {"decay": _decay_without_lr},
    "adam_eps_twice": {"denom": _denom(lambda f, v: torch.sqrt(v / f.bc2 + f.hp.eps) + f.hp.eps)},
    "adam_update_guard_eps": {"apply": _apply_guard(1e-8)},
    "adam_bias_corrections_float32": {"bias": _bias_f32},
    "adam_step_size_float32": {"apply": _apply_step_f32},
    "adam_betas_float32": {"moments": _moments_betas_f32},
    "adam_tf_style_eps": {"denom": _denom(lambda f, v: torch.sqrt(v) + f.hp.eps), "apply": _apply_tf},
    "adam_v_eps_in_place": {"moments": _moments_eps_in_place},
    "adam_m_bias_corrected_in_place": {"moments": _moments_corrected_in_place, "apply": _apply_lr},
    "adam_l2_in_m_only": {"grad": _grad_l2_m_only},
    "adam_step_counted_twice": {"advance": _advance_twice},
    "adam_bias_corrections_swapped": {"bias": _bias_swapped},
    "adam_bias_correction_twice": {"apply": _apply_twice},
    "nadam_nesterov": {"grad": _grad_keep, "apply": _apply_nesterov},
    "adabelief": {"moments": _moments_belief, "denom": _denom_belief},
    "lion": {"moments": _moments_lion, "apply": _apply_lion},
    "amsgrad_not_asked": {"vmax": _vmax_always},
    "adam_corrected_moments_float32": {  # m-hat, v-hat kept, lr and eps on them directly
        "moments": _moments_corrected_lerp,
        "apply": _apply_lr,
        "denom": _denom(lambda f, v: torch.sqrt(v) + f.hp.eps),
    },
}  # fmt: skip
