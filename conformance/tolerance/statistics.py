r"""The bound of the layer statistic $c_l = S_1^2/(d_l S_2)$ and the range of its evaluation.

$S_1 = \sum_i v_i$, $S_2 = \sum_i v_i^2$ over the $d = d_l$ coordinates of the layer. A port may
evaluate $c$

- in the **ratio** form $S_1^2/(d S_2)$, the **mean** form $\bar v^2/\overline{v^2}$
  ($\bar v = S_1/d$, $\overline{v^2} = S_2/d$) or the **norm** form $(S_1/\|v\|_2)^2/d$;
- with the products and quotients in the accumulation format (float32 for half formats) or in
  the tensor format $G$; the sums accumulate in the accumulation format (assumption 1);
- on $v$ **rescaled** (by $2^{-E}$, $E$ the exponent of $\max v$, exact; or by $\max v$, one
  rounding per term) or **unscaled**.

Every intermediate $x$ of an evaluation is perturbed by the input errors and one rounding, and $c$
is a product of such factors, so with $r_1$, $r_2$ the relative error bounds of the computed
$S_1$, $S_2$ (input errors $\sum E_v$, $\sum (2vE_v + E_v^2)$; summation
$\gamma_{d-1}(u_{acc})$; rescaling; rounding into $G$; underflow $2d\,\eta_{acc}$ and
$d\,\eta_G$ of the terms) and $\varepsilon_x = u_G + \eta_G/x_{\min}$ the relative rounding of
the intermediate $x$ ($x_{\min}$ a lower bound of the port's value: the underflow term divided),
the ratio form gives

$$\left|\frac{c'}{c} - 1\right| \le
\frac{(1+r_1)^2(1+\varepsilon_{S_1^2})(1+\varepsilon_{/})(1+\varepsilon_{f})}
     {(1-r_2)(1-\varepsilon_{dS_2})} - 1,$$

and likewise the mean and norm forms (:func:`_form_bounds`). $E_c$ is $c$ times the largest over
the forms and evaluations, capped by the range of $c'$: a port's $c'$ is its own exact
$c(v') \in [1/d, 1]$ times $1 \pm \rho_r$ (the rounding-only part), so
$|c' - c| \le \max(1 + \rho_r - c,\ c - (1-\rho_r)/d)$.

**Range (the stated assumption).** An *unscaled* evaluation is covered only where all its
intermediates stay in the normal range of their format (lower bounds $x(1-r_x) \ge \mu_G$, upper
bounds below the overflow threshold). Where they do not, e.g. float32 $S_2 < 2^{-126}$ for
$v \lesssim 10^{-19}$, a correct port must rescale: :func:`statistics_range` names those layers,
the evaluation and the threshold, so that a failure there can be reported as "unscaled
statistics" rather than as a budget failure; the budget itself is that of the rescaled
evaluations. A layer whose port $v'$ may be all zero (every $E_{v,i} \ge v_i$) has no defined
$c'$: any value the port reports is a convention ($c' v' = 0$ whatever it is), so $E_c = +\infty$
there (unresolved, not judged).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..formats import Format, gamma
from ..layout import Flat
from .lemmas import eta, rel_product

F = np.ndarray

FORMS = ("ratio", "mean", "norm")


@dataclass(frozen=True)
class RangeNote:
    """A layer whose statistics an evaluation cannot keep in range (outside the model)."""

    layer: int
    evaluation: str  # e.g. "unscaled, float32"
    quantity: str  # the first intermediate out of range, e.g. "sum(v^2)"
    value: float  # its reference value
    v_max: float  # the layer's largest v
    v_needed: float  # the largest v above which the evaluation is in range (nan: none)
    message: str


@dataclass
class StatisticsBounds:
    """Per-layer bounds of c: compared (``ec``), for the down-scaling (``ecq``, ``c_hi``)."""

    ec: F  # bound of the port's reported c (inf where its v may be all zero, or empty layers)
    ecq: F  # bound of |c' - c| for a port whose layer v' is not all zero
    c_hi: F  # upper bound of such a port's c'
    rho: F  # rounding-only relative bound of c'
    notes: list[RangeNote]


def _degree_values(s1: F, s2: F, d: F) -> dict[str, tuple[F, int]]:
    """Intermediates of every form as (value in scaled units, degree in v)."""
    with np.errstate(all="ignore"):
        nrm = np.sqrt(s2)
        q = s1 / nrm
        return {
            "sum(v)": (s1, 1),
            "sum(v^2)": (s2, 2),
            "sum(v)^2": (s1 * s1, 2),
            "d*sum(v^2)": (d * s2, 2),
            "mean(v)": (s1 / d, 1),
            "mean(v^2)": (s2 / d, 2),
            "mean(v)^2": ((s1 / d) ** 2, 2),
            "||v||": (nrm, 1),
            "sum(v)/||v||": (q, 0),
            "(sum(v)/||v||)^2": (q * q, 0),
        }


def _scaled_low(d: F) -> dict[str, F]:
    """Lower bounds of the intermediates of a rescaled layer (max term in [1/2, 1))."""
    return {
        "sum(v)": np.full(d.shape, 0.5),
        "sum(v^2)": np.full(d.shape, 0.25),
        "sum(v)^2": np.full(d.shape, 0.25),
        "d*sum(v^2)": 0.25 * d,
        "mean(v)": 0.5 / d,
        "mean(v^2)": 0.25 / d,
        "mean(v)^2": 0.25 / (d * d),
        "||v||": np.full(d.shape, 0.5),
        "sum(v)/||v||": np.ones(d.shape),
        "(sum(v)/||v||)^2": np.ones(d.shape),
    }


def _scaled_high(d: F) -> dict[str, F]:
    """Upper bounds of the intermediates of a rescaled layer (every term at most 1, times 1+u)."""
    one = np.ones(d.shape) * (1 + 2.0**-7)
    return {
        "sum(v)": d * one,
        "sum(v^2)": d * one,
        "sum(v)^2": d * d * one,
        "d*sum(v^2)": d * d * one,
        "mean(v)": one,
        "mean(v^2)": one,
        "mean(v)^2": one,
        "||v||": np.sqrt(d) * one,
        "sum(v)/||v||": np.sqrt(d) * one,
        "(sum(v)/||v||)^2": d * one,
    }


_FORM_INTERMEDIATES = {
    "ratio": ("sum(v)", "sum(v^2)", "sum(v)^2", "d*sum(v^2)"),
    "mean": ("sum(v)", "sum(v^2)", "mean(v)", "mean(v^2)", "mean(v)^2"),
    "norm": ("sum(v)", "sum(v^2)", "||v||", "sum(v)/||v||", "(sum(v)/||v||)^2"),
}


def _form_bounds(r1: F, r2: F, eps: dict[str, F], ef: F) -> dict[str, F]:
    """Relative bound of c' per form from those of S1, S2 and of each intermediate's rounding."""
    with np.errstate(all="ignore"):
        sn = np.where(r2 < 1, 1.0 - np.sqrt(np.maximum(1.0 - r2, 0.0)), np.inf)
    e = eps
    return {
        "ratio": rel_product([r1, r1, e["sum(v)^2"], e["c"], ef], [r2, e["d*sum(v^2)"]]),
        "mean": rel_product(
            [r1, e["mean(v)"], r1, e["mean(v)"], e["mean(v)^2"], e["c"], ef],
            [r2, e["mean(v^2)"]],
        ),
        "norm": rel_product(
            [r1, e["sum(v)/||v||"], r1, e["sum(v)/||v||"], e["(sum(v)/||v||)^2"], e["c"], ef],
            [sn, e["||v||"], sn, e["||v||"]],
        ),
    }


_NAMES = (
    "sum(v)",
    "sum(v^2)",
    "sum(v)^2",
    "d*sum(v^2)",
    "mean(v)",
    "mean(v^2)",
    "mean(v)^2",
    "||v||",
    "sum(v)/||v||",
    "(sum(v)/||v||)^2",
)


@dataclass(frozen=True)
class _Evals:
    """The evaluations covered, as columns (one row per evaluation) for vectorized bounds."""

    names: tuple[str, ...]
    formats: tuple[Format, ...]
    scaled: F  # (E, 1) bool
    by_max: F


@lru_cache(maxsize=64)
def _evals(fm: Format) -> _Evals:
    fa = fm.acc
    fmts = tuple({fa.name: fa, fm.name: fm}.values())
    rows = [(f"scaled, {g.name}", g, True, bm) for g in fmts for bm in (False, True)]
    rows += [(f"unscaled, {g.name}", g, False, False) for g in fmts]
    return _Evals(
        tuple(r[0] for r in rows),
        tuple(r[1] for r in rows),
        np.array([[r[2]] for r in rows]),
        np.array([[r[3]] for r in rows]),
    )


@dataclass(frozen=True)
class LayerSums:
    r"""The layer reductions the bound of $c$ reads: $\max v$, the sums over the layer of
    $\sigma v$, $(\sigma v)^2$, $\sigma E_v$, $2\sigma^2 vE_v + (\sigma E_v)^2$ ($\sigma = 2^{-e}$,
    $e$ the exponent of the layer's $\max v$), and $\max(v - E_v)$; per layer."""

    vmax: F
    s1: F
    s2: F
    e1: F
    e2: F
    low: F


def scale_exponent(vmax: F) -> F:
    r"""The exponent $e$ of each layer's $\max v$ (clipped; 0 for an all-zero or non-finite one)."""
    safe = np.where(np.isfinite(vmax) & (vmax > 0), vmax, 1.0)
    return np.clip(np.frexp(safe)[1], -960, 960)


def layer_sums(v: F, ev: F, flat: Flat) -> LayerSums:
    """:class:`LayerSums` of whole flat arrays (``np.bincount`` adds each layer's terms in
    coordinate order: the order a chunked evaluation continues, conformance.tolerance.chunked)."""
    vmax = flat.layer_max(v)
    sig = np.ldexp(1.0, -scale_exponent(vmax))[flat.layer_id]
    with np.errstate(all="ignore"):
        vv, evv = v * sig, ev * sig
        s1 = flat.layer_sum(vv)
        s2 = flat.layer_sum(vv * vv)
        e1 = flat.layer_sum(evv)
        e2 = flat.layer_sum(2 * vv * evv + evv * evv)
    return LayerSums(vmax, s1, s2, e1, e2, flat.layer_max(v - ev))


def statistics_bounds(v: F, ev: F, c: F, flat: Flat, fm: Format) -> StatisticsBounds:
    """Bounds of c per layer for ports computing in ``fm`` (see the module docstring)."""
    return statistics_from_sums(layer_sums(v, ev, flat), c, flat.layer_size, fm)


def statistics_from_sums(ls: LayerSums, c: F, d: F, fm: Format) -> StatisticsBounds:
    """:func:`statistics_bounds` from the layer reductions ``ls`` (``d``: the layer sizes)."""
    fa = fm.acc
    dd = np.maximum(d, 1.0)
    vmax, s1, s2 = ls.vmax, ls.s1, ls.s2
    expo = scale_exponent(vmax)
    with np.errstate(all="ignore"):
        r1_in = np.where(s1 > 0, ls.e1 / s1, np.inf)
        r2_in = np.where(s2 > 0, ls.e2 / s2, np.inf)
    r1_in = np.where(np.isnan(r1_in), np.inf, r1_in)
    r2_in = np.where(np.isnan(r2_in), np.inf, r2_in)
    gd = _gammas(np.asarray(d, dtype=np.float64).tobytes(), fa.u)
    vals = _degree_values(s1, s2, dd)
    ev_ = _evals(fm)
    with np.errstate(all="ignore"):
        full, rho, ok, first = _evaluate(ev_, vals, expo, s1, r1_in, r2_in, gd, dd, fm)
    nz = s1 > 0
    full_l = np.max(np.where(ok, full, 0.0), axis=0)
    rho_l = np.max(np.where(ok, rho, 0.0), axis=0)
    notes = [
        _note(
            int(k),
            ev_.names[i],
            ev_.formats[i],
            bool(ev_.scaled[i, 0]),
            _NAMES[first[i, k]],
            vals,
            expo,
            vmax,
        )
        for i, k in zip(*np.nonzero(~ok & nz), strict=True)
    ]
    cap = np.maximum(1.0 + rho_l - c, c - (1.0 - rho_l) / dd)
    with np.errstate(invalid="ignore"):
        ecq = np.minimum(c * full_l, cap)
    ecq = np.where(np.isnan(ecq), cap, ecq)
    ecq = np.where(d > 0, ecq, 0.0)
    c_hi = np.minimum(c + ecq, 1.0 + rho_l)
    maybe_zero = ls.low <= 0  # every v_i <= E_v,i: the port's layer may be zero
    ec = np.where(maybe_zero | (d == 0), np.inf, ecq)
    return StatisticsBounds(ec, ecq, c_hi, rho_l, notes)


@lru_cache(maxsize=64)
def _columns(fm: Format) -> tuple[F, F, F, F, F, F]:
    """Per-evaluation columns of the formats' constants: u, eta, tiny, max, the rounding into
    the accumulation format, whether c is rounded into ``fm`` (the same for every step)."""
    e, fa = _evals(fm), fm.acc
    cols = (
        [g.u for g in e.formats],
        [eta(g) for g in e.formats],
        [g.tiny for g in e.formats],
        [g.max for g in e.formats],
        [0.0 if g is fa else g.u for g in e.formats],
        [0.0 if g is fm else 1.0 for g in e.formats],
    )
    a, b, c, d, i, r = (_frozen(np.array(x)[:, None]) for x in cols)
    return a, b, c, d, i, r


def _frozen(a: F) -> F:
    """``a`` read-only: a cached array is shared by every step."""
    a.flags.writeable = False
    return a


@lru_cache(maxsize=256)
def _gammas(d: bytes, u: float) -> F:
    """gamma_{d-1}(u) of each layer size (``d``: the float64 sizes' bytes)."""
    return _frozen(np.array([gamma(max(k - 1.0, 0.0), u) for k in np.frombuffer(d)]))


@lru_cache(maxsize=256)
def _scaled_range(dd: bytes) -> tuple[F, F]:
    """The rescaled intermediates' lower and upper bounds by layer (``dd``: max(d, 1)'s bytes)."""
    d = np.frombuffer(dd)
    low_s, high_s = _scaled_low(d), _scaled_high(d)
    lo = np.stack([low_s[n] for n in _NAMES])
    return _frozen(lo), _frozen(np.stack([high_s[n] for n in _NAMES]))


@dataclass(frozen=True)
class _Constants:
    """What :func:`_evaluate` computes from the format and the layer sizes alone, once (the same
    operations on the same values as inline: bitwise the same bounds)."""

    und1_num: F  # numerators of the underflow terms of S1, S2
    und2_num: F
    rnd1: F  # rounding-only relative bounds of S1, S2 (before their underflow terms)
    rnd2: F
    gu3: F
    geta3: F
    gtiny3: F
    gmax3: F
    lo_scaled: F  # lower bounds of a rescaled layer's intermediates, after their roundings
    hi_s: F
    ed_c: F  # relative bound of the rounding of c, and of c into fm
    ef: F


@lru_cache(maxsize=256)
def _constants(fm: Format, dd_bytes: bytes, gd_bytes: bytes) -> _Constants:
    fa = fm.acc
    e = _evals(fm)
    dd, gd = np.frombuffer(dd_bytes), np.frombuffer(gd_bytes)
    gu, geta, gtiny, gmax, into, rounded = _columns(fm)
    # c computed in the accumulation format and rounded into fm: c >= 1/d, so eta/c <= eta d
    ef = rounded * (fm.u + eta(fm) * dd)
    ea = eta(fa)
    lo_s, hi_s = _scaled_range(dd_bytes)
    u_scale = np.where(e.by_max, fa.u, 0.0)
    gu3, geta3 = gu[:, :, None], geta[:, :, None]
    shape = (len(e.names), dd.size)
    k = _Constants(
        und1_num=2 * dd * ea + geta,
        und2_num=dd * geta + dd * ea + geta,
        rnd1=rel_product([u_scale, gd, into]),
        rnd2=rel_product([2 * u_scale + u_scale**2, gu, gd, into]),
        gu3=gu3,
        geta3=geta3,
        gtiny3=gtiny[:, :, None],
        gmax3=gmax[:, :, None],
        lo_scaled=lo_s[None] * (1.0 - gu3) ** 4,
        hi_s=hi_s[None],
        ed_c=np.broadcast_to(gu + geta * dd, shape),
        ef=np.broadcast_to(ef, shape),
    )
    for f in dataclasses.fields(k):  # shared by every step
        getattr(k, f.name).flags.writeable = False
    return k


def _evaluate(
    e: _Evals,
    vals: dict[str, tuple[F, int]],
    expo: F,
    s1: F,
    r1_in: F,
    r2_in: F,
    gd: F,
    dd: F,
    fm: Format,
) -> tuple[F, F, F, F]:
    """(full relative bound, rounding-only bound, in range?, first name out of range) per
    evaluation (rows) and layer (columns)."""
    k = _constants(fm, dd.tobytes(), gd.tobytes())
    sc = e.scaled  # (E, 1)
    nz = s1 > 0
    x_s = np.stack([vals[n][0] for n in _NAMES])  # (N, L) scaled units
    deg = np.array([vals[n][1] for n in _NAMES])
    x_u = np.ldexp(x_s, (deg[:, None] * expo[None, :]).astype(np.int64))  # unscaled
    v1 = np.where(sc, 0.5, np.maximum(x_u[0] * (1.0 - np.minimum(r1_in, 1.0)), 0.0))
    v2 = np.where(sc, 0.25, np.maximum(x_u[1] * (1.0 - np.minimum(r2_in, 1.0)), 0.0))
    und1 = np.where(nz, np.where(v1 > 0, k.und1_num / v1, np.inf), 0.0)
    und2 = np.where(nz, np.where(v2 > 0, k.und2_num / v2, np.inf), 0.0)
    rnd1 = k.rnd1 + und1
    rnd2 = k.rnd2 + und2
    r1 = rel_product([r1_in, rnd1])
    r2 = rel_product([r2_in, rnd2])
    sq1 = 2 * r1 + r1 * r1
    rel_in = np.stack([r1, r2, sq1, r2, r1, r2, sq1, r2, r1 + r2, 3 * (r1 + r2)], axis=1)
    ax_s = np.abs(x_s)[None]
    ax_u = np.abs(x_u)[None]
    rin = np.minimum(rel_in, 1.0)
    sc3 = sc[:, :, None]
    gu3, geta3 = k.gu3, k.geta3
    lo = np.where(sc3, k.lo_scaled, ax_u * (1.0 - rin))
    hi_sc = np.minimum(
        np.where(np.isnan(ax_s * (1 + rel_in + gu3)), np.inf, ax_s * (1 + rel_in + gu3)), k.hi_s
    )
    hi = np.where(sc3, hi_sc, ax_u * (1.0 + rel_in + gu3))
    eps = np.where(nz, np.where(lo > 0, gu3 + geta3 / lo, np.inf), gu3)
    inr = (lo >= k.gtiny3) & (hi < k.gmax3)
    bad = ~inr & nz
    ok = ~np.any(bad, axis=1)
    first = np.argmax(bad, axis=1)
    ed = {n: eps[:, i, :] for i, n in enumerate(_NAMES)}
    assert r1.shape == k.ed_c.shape
    ed["c"], ef = k.ed_c, k.ef
    full = _form_bounds(r1, r2, ed, ef)
    rho = _form_bounds(rnd1, rnd2, ed, ef)
    f_full = np.maximum.reduce([full[f] for f in FORMS])
    f_rho = np.maximum.reduce([rho[f] for f in FORMS])
    f_full = np.where(nz & ~np.isnan(f_full), f_full, np.inf)
    f_rho = np.where(np.isnan(f_rho), np.inf, f_rho)
    return f_full, f_rho, ok, first


def _note(
    k: int,
    name: str,
    g: Format,
    scaled: bool,
    quantity: str,
    vals: dict[str, tuple[F, int]],
    expo: F,
    vmax: F,
) -> RangeNote:
    x, deg = vals[quantity]
    value = float(np.ldexp(x[k], int(deg * expo[k]))) if not scaled else float(x[k])
    vm = float(vmax[k])
    low = value < g.tiny
    kind = "underflow" if low else "overflow"
    need = float("nan")
    if deg > 0 and value > 0:
        lim = g.tiny if low else g.max
        need = vm * (lim / value) ** (1.0 / deg)
    bound = "above" if low else "below"
    if scaled:
        msg = (
            f"layer {k}: statistics {name}: {quantity} overflows {g.name}; a port must "
            f"form the products of c in a wider format or in the mean form"
        )
    else:
        msg = (
            f"layer {k}: unscaled statistics in {g.name}: {quantity} = {value:.3g} would "
            f"{kind} (max v = {vm:.3g}; in range only for max v {bound} {need:.2g}); a port "
            f"that does not rescale its layer sums is outside the tolerance model here"
        )
    return RangeNote(k, name, quantity, value, vm, need, msg)
