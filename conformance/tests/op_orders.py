"""Legitimate operation orders of one Adam / SET-Adam step, as small NumPy ports in a port dtype.

The tolerance model (``conformance.tolerance``) claims to bound every *correct* port, whatever
order of operations it uses, as long as the order belongs to the class stated in
docs/src/numerics/tolerance.md (section *The arithmetic orders covered*). This module writes that
class down as executable ports: an :class:`Order` picks one variant per stage, and
:func:`port_step` runs one step in that order, rounding every operation once to the format it is
computed in (IEEE round to nearest even, gradual underflow):

- every value is a float64 array holding a number of the port's format; a basic operation is
  evaluated in float64 and rounded to the format with :func:`conformance.formats.round_to`, which
  is the correctly rounded result (float64 has at least 2p + 2 bits for p <= 24, so the double
  rounding is innocuous for +, -, *, /, sqrt), and exact for float64 itself;
- a fused multiply-add is rounded once from the exact rational value (:func:`fma`);
- reductions of half formats accumulate in float32 (the model's assumption 1); scalar
  hyperparameter arithmetic is done in at least float32 (assumption 2) and the scalar is rounded
  once more into the tensor format when ``Order.native_scalars`` (NumPy's arithmetic on a float16
  array with a Python float) or enters the operation unrounded (torch's ``opmath``).

Variants per stage (the audit's list in issue 16):

- bias corrections ``1 - beta^t``: Python float64 (``py``), ``pow`` of a rounded beta, repeated
  product (``prod``), ``expm1`` of ``t log1p(-(1 - beta))``;
- moments: two products, torch's two-branch ``lerp``, fused multiply-add; ``g^2`` squared first or
  ``(1 - beta2) g`` first;
- the layer statistics: sequential, reversed, pairwise, NumPy or FMA-dot sums; ratio
  ``S1^2/(d S2)``, mean ``mean(v)^2/mean(v^2)`` or norm ``(S1/||v||)^2/d`` form; rescaled by a
  power of two, by ``max v`` or not at all; in the accumulation or in the tensor format; clamped
  into ``[1/d, 1]`` or not; any value for a layer whose ``v`` is all zero in the port;
- epsilon-embedding: ``vs/bc2``, ``vs * (1/bc2)``, ``fma(vs, 1/bc2, eps)``,
  ``sqrt(vs + eps bc2)/sqrt(bc2)``, ``v * (c/bc2)``;
- down-translating: ``w - tau w_min`` or ``fma(-tau, w_min, w)``;
- Adam's denominator: ``sqrt(v/bc2 + eps_root) + eps``, torch's ``sqrt(v)/sqrt(bc2) + eps``,
  ``sqrt(v * (1/bc2)) + eps``;
- the update: ``s * (m/D)``, addcdiv ``(s m)/D``, m-hat first ``lr ((m/bc1)/D)``, the stepsize
  ``(s/D) m``, ``fma(-s, m/D, theta)``; decoupled decay torch-style (``theta (1 - lr lambda)``
  first) or optax-style (``lr (m-hat/D + lambda theta)``).

The ports are written from the formulas; none of them calls ``setadam_ref``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

import numpy as np

from conformance.formats import Format, fmt, round_to
from conformance.layout import Flat
from setadam_ref import AdamConfig, Config, SETAdamConfig

F = np.ndarray

BIAS_CORRECTIONS = ("py", "pow", "prod", "expm1")
MOMENTS = ("two", "lerp", "fma")
SQUARES = ("square_first", "scale_first")
SUMS = ("seq", "rev", "pairwise", "numpy", "fma")
C_FORMS = ("ratio", "mean", "norm")
C_SCALINGS = ("pow2", "max", "none")
C_PRECISIONS = ("acc", "dtype")
C_ZEROS = (1.0, 0.0, 0.5)
EMBEDS = ("div", "recip", "fma", "split", "cbc")
TRANSLATES = ("sub", "fma")
DENOMS = ("root", "torch", "recip")
UPDATES = ("q_first", "addcdiv", "mhat", "stepsize", "fma")
DECAYS = ("torch", "optax")
REPORTS = ("pre", "diff")


@dataclass(frozen=True)
class Order:
    """One operation order per stage (see the module docstring for the variants)."""

    bc: str = "py"
    moment: str = "two"
    square: str = "square_first"
    sums: str = "numpy"
    c_form: str = "ratio"
    c_scaling: str = "pow2"
    c_precision: str = "acc"
    c_clamp: bool = False
    c_zero: float = 1.0
    embed: str = "div"
    translate: str = "sub"
    denom: str = "root"
    update: str = "q_first"
    decay: str = "torch"
    report: str = "pre"
    native_scalars: bool = False

    @property
    def rescaled(self) -> bool:
        """True when the layer statistics are rescaled (the model's no-underflow assumption)."""
        return self.c_scaling != "none"


#: every field's variants, for strategies and the bench
VARIANTS: dict[str, tuple[Any, ...]] = {
    "bc": BIAS_CORRECTIONS,
    "moment": MOMENTS,
    "square": SQUARES,
    "sums": SUMS,
    "c_form": C_FORMS,
    "c_scaling": C_SCALINGS,
    "c_precision": C_PRECISIONS,
    "c_clamp": (False, True),
    "c_zero": C_ZEROS,
    "embed": EMBEDS,
    "translate": TRANSLATES,
    "denom": DENOMS,
    "update": UPDATES,
    "decay": DECAYS,
    "report": REPORTS,
    "native_scalars": (False, True),
}
assert set(VARIANTS) == {f.name for f in fields(Order)}


def random_order(rng: np.random.Generator) -> Order:
    """An order with every field drawn uniformly from its variants."""
    kw = {k: v[int(rng.integers(len(v)))] for k, v in VARIANTS.items()}
    return Order(**kw)


# ---------------------------------------------------------------------------------------------
# exact rounding


def _round_fraction(q: Fraction, f: Format) -> float:
    """``q`` rounded to nearest even in format ``f`` (gradual underflow, overflow to inf)."""
    if q == 0:
        return 0.0
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    elif Fraction(2) ** (e + 1) <= a:
        e += 1
    e = max(e, f.emin)
    quantum = Fraction(2) ** (e - f.p + 1)
    k = round(a / quantum)  # Fraction.__round__: ties to even
    val = k * quantum
    out = float("inf") if val > Fraction(f.max) else float(val)
    return -out if q < 0 else out


def fma(a: F, b: F, c: F, dtype: str) -> F:
    """``a * b + c`` rounded once to ``dtype`` (exact rational evaluation, elementwise)."""
    f = fmt(dtype)
    aa, bb, cc = np.broadcast_arrays(
        np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(c, np.float64)
    )
    out = np.empty(aa.shape)
    for i in np.ndindex(aa.shape):
        x, y, z = float(aa[i]), float(bb[i]), float(cc[i])
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
            with np.errstate(all="ignore"):
                out[i] = x * y + z
            continue
        out[i] = _round_fraction(Fraction(x) * Fraction(y) + Fraction(z), f)
        if math.isinf(out[i]):
            OVERFLOW[0] = True
    return out


#: set when an operation overflowed (a finite exact result rounded to +-inf): the port left
#: the range of its format, which the model does not cover (see ``port_step``)
OVERFLOW = [False]


class Arith:
    """Arithmetic of one format: every operation rounded once to ``dtype``."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.f = fmt(dtype)

    def r(self, x: Any) -> F:
        a = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = round_to(a, self.dtype)
        if np.any(np.isinf(out) & np.isfinite(a)):
            OVERFLOW[0] = True
        return out

    def add(self, a: Any, b: Any) -> F:
        with np.errstate(all="ignore"):
            return self.r(np.add(a, b))

    def sub(self, a: Any, b: Any) -> F:
        with np.errstate(all="ignore"):
            return self.r(np.subtract(a, b))

    def mul(self, a: Any, b: Any) -> F:
        with np.errstate(all="ignore"):
            return self.r(np.multiply(a, b))

    def div(self, a: Any, b: Any) -> F:
        with np.errstate(all="ignore"):
            return self.r(np.divide(a, b))

    def sqrt(self, a: Any) -> F:
        with np.errstate(all="ignore"):
            return self.r(np.sqrt(a))

    def fma(self, a: Any, b: Any, c: Any) -> F:
        return fma(np.asarray(a), np.asarray(b), np.asarray(c), self.dtype)


def scalar_dtype(dtype: str) -> str:
    """Format of scalar hyperparameter arithmetic: the dtype, at least float32."""
    return dtype if fmt(dtype).p >= 24 else "float32"


def acc_dtype(dtype: str) -> str:
    """Format reductions accumulate in: float32 for half formats, the dtype otherwise."""
    return fmt(dtype).acc.name


def coarser(a: str, b: str) -> str:
    """The format with the larger unit roundoff (ties: the one with the smaller range)."""
    fa, fb = fmt(a), fmt(b)
    if fa.p != fb.p:
        return a if fa.p < fb.p else b
    return a if fa.emin >= fb.emin else b


# ---------------------------------------------------------------------------------------------
# stages


def bias_correction(beta: float, t: int, how: str, sdt: str) -> float:
    """``1 - beta^t`` in the scalar format ``sdt``, formed as ``how`` says."""
    S = Arith(sdt)
    if how == "py":
        return float(S.r(1.0 - beta**t))
    bs = float(S.r(beta))
    if how == "pow":
        return float(S.sub(1.0, S.r(bs**t)))
    if how == "prod":
        p = bs
        for _ in range(t - 1):
            p = float(S.mul(p, bs))
            if p == 0.0:
                break
        return float(S.sub(1.0, p))
    if how == "expm1":
        omb = float(S.sub(1.0, bs))
        if omb == 1.0:
            return 1.0
        return float(S.r(-math.expm1(t * math.log1p(-omb))))
    raise ValueError(how)


def _lerp(A: Arith, start: F, end: F, w: float, k: _Scalars) -> F:
    """torch.lerp: ``start + w (end - start)`` for w < 1/2, ``end - (end - start)(1 - w)``;
    ``w`` in the scalar format, its complement formed there (assumption 2)."""
    d = A.sub(end, start)
    if w < 0.5:
        return A.add(start, A.mul(k.at(w, A), d))
    return A.sub(end, A.mul(d, k.at(float(k.S.sub(1.0, w)), A)))


class _Scalars:
    """The step's scalar constants in the scalar format, offered to tensor ops of a format."""

    def __init__(self, cfg: Config, t: int, order: Order, dtype: str) -> None:
        sdt = scalar_dtype(dtype)
        S = Arith(sdt)
        self.native = order.native_scalars
        b1, b2 = cfg.betas
        self.b1 = float(S.r(b1))
        self.b2 = float(S.r(b2))
        self.omb1 = float(S.sub(1.0, self.b1))
        self.omb2 = float(S.sub(1.0, self.b2))
        self.bc1 = bias_correction(b1, t, order.bc, sdt)
        self.bc2 = bias_correction(b2, t, order.bc, sdt)
        self.ibc2 = float(S.div(1.0, self.bc2))
        self.sqrt_bc2 = float(S.sqrt(self.bc2))
        self.lr = float(S.r(cfg.lr))
        self.s = float(S.div(self.lr, self.bc1))
        self.eps = float(S.r(cfg.eps))
        self.eps_bc2 = float(S.mul(self.eps, self.bc2))
        self.wd = float(S.r(cfg.weight_decay))
        self.decay = float(S.sub(1.0, S.mul(self.lr, self.wd)))
        self.eps_root = float(S.r(cfg.eps_root)) if isinstance(cfg, AdamConfig) else 0.0
        self.tau = float(S.r(cfg.tau)) if isinstance(cfg, SETAdamConfig) else 0.0
        self.S = S

    def at(self, x: float, A: Arith) -> float:
        """The scalar as a tensor op of ``A`` sees it (rounded to A's format when native)."""
        return float(A.r(x)) if self.native else x


def _sum(x: F, how: str, acc: str) -> float:
    """Sum of ``x`` accumulated in ``acc`` (one rounding per addition), in the order ``how``."""
    A = Arith(acc)
    if x.size == 0:
        return 0.0
    if how == "numpy":
        npdt = np.float32 if acc == "float32" else np.float64
        with np.errstate(all="ignore"):
            return float(np.sum(x.astype(npdt)))
    if how in ("seq", "fma"):
        items = list(x)
    elif how == "rev":
        items = list(x[::-1])
    elif how == "pairwise":
        return _pairwise(x, A)
    else:
        raise ValueError(how)
    s = 0.0
    for xi in items:
        s = float(A.add(s, xi))
    return s


def _pairwise(x: F, A: Arith) -> float:
    if x.size == 1:
        return float(x[0])
    h = x.size // 2
    return float(A.add(_pairwise(x[:h], A), _pairwise(x[h:], A)))


def _sum_squares(x: F, how: str, sq: Arith, acc: str) -> float:
    """Sum of ``x_i^2``: squares in ``sq``'s format, or fused into the accumulation (``fma``)."""
    if how == "fma":
        s = np.zeros(())
        for xi in x:
            s = fma(np.asarray(xi), np.asarray(xi), s, acc)
        return float(s)
    return _sum(sq.mul(x, x), how, acc)


def layer_cos2(v: F, order: Order, dtype: str) -> tuple[float, bool]:
    """The port's ``c`` of one layer, rounded to ``dtype``, and whether an intermediate of its
    statistics left the normal range of its format (only possible without rescaling)."""
    acc = acc_dtype(dtype)
    st = Arith(acc if order.c_precision == "acc" else dtype)
    d = v.size
    if d == 0 or not np.any(v != 0):
        return float(order.c_zero), False
    if order.c_scaling == "pow2":
        e = math.frexp(float(np.max(v)))[1]
        x = Arith(acc).r(np.ldexp(v, -e))  # exact unless an entry becomes subnormal
    elif order.c_scaling == "max":
        x = Arith(acc).div(v, float(np.max(v)))
    else:
        x = v
    s1 = float(st.r(_sum(x, order.sums, acc)))
    s2 = float(st.r(_sum_squares(x, order.sums, st, acc)))
    seen = [s1, s2, *st.mul(x, x)[x != 0]]
    with np.errstate(all="ignore"):
        if order.c_form == "ratio":
            num, den = st.mul(s1, s1), st.mul(float(d), s2)
            c = st.div(num, den)
            seen += [num, den]
        elif order.c_form == "mean":
            m1 = st.div(s1, float(d))
            m2 = st.div(s2, float(d))
            sq = st.mul(m1, m1)
            c = st.div(sq, m2)
            seen += [m1, m2, sq]
        elif order.c_form == "norm":
            nrm = st.sqrt(s2)
            q = st.div(s1, nrm)
            qq = st.mul(q, q)
            c = st.div(qq, float(d))
            seen += [nrm, q, qq]
        else:
            raise ValueError(order.c_form)
        if order.c_clamp:
            c = np.minimum(np.maximum(c, st.div(1.0, float(d))), 1.0)
    a = np.abs(np.asarray(seen, dtype=np.float64))
    outside = bool(np.any(~np.isfinite(a) | (a < st.f.tiny)))
    return float(Arith(dtype).r(c)), outside


def port_step(
    order: Order,
    cfg: Config,
    flat: Flat,
    t: int,
    theta0: F,
    g: F,
    m0: F,
    v0: F,
    vmax0: F | None,
    dtype: str,
    state_dtype: str | None = None,
) -> dict[str, F]:
    """One step in ``order``: the port's values of every quantity (flat; ``cos2`` per layer).

    Inputs are flat float64 arrays of numbers of the port's formats: ``theta0`` and ``g`` of
    ``dtype``, ``m0``, ``v0``, ``vmax0`` of ``state_dtype`` (default ``dtype``). The moments are
    computed in the state format, the stages after them in the state format too (a port that keeps
    float32 state computes its step in float32), the new parameters rounded to ``dtype``.
    """
    OVERFLOW[0] = False
    sdt = state_dtype or dtype
    P, S = Arith(dtype), Arith(sdt)
    M = S  # stages after the moments: in the state format
    k = _Scalars(cfg, t, order, coarser(dtype, sdt))
    out: dict[str, F] = {}
    ge = -g if cfg.maximize else g
    l2 = cfg.weight_decay > 0 and cfg.weight_decay_mode == "l2"
    decoupled = cfg.weight_decay > 0 and cfg.weight_decay_mode == "decoupled"
    if l2:
        ge = P.add(ge, P.mul(k.at(k.wd, P), theta0))
    out["grad"] = ge
    b1, omb1 = k.at(k.b1, S), k.at(k.omb1, S)
    b2, omb2 = k.at(k.b2, S), k.at(k.omb2, S)
    if order.moment == "two":
        m = S.add(S.mul(b1, m0), S.mul(omb1, ge))
    elif order.moment == "lerp":
        m = _lerp(S, m0, ge, k.omb1, k)
    else:
        m = S.fma(b1, m0, S.mul(omb1, ge))
    if order.square == "square_first":
        gg = S.mul(omb2, S.mul(ge, ge))
        if order.moment == "lerp":
            v = _lerp(S, v0, S.mul(ge, ge), k.omb2, k)
        elif order.moment == "fma":
            v = S.fma(b2, v0, gg)
        else:
            v = S.add(S.mul(b2, v0), gg)
    else:
        sg = S.mul(omb2, ge)
        if order.moment == "fma":
            v = S.fma(sg, ge, S.mul(b2, v0))
        else:
            v = S.add(S.mul(b2, v0), S.mul(sg, ge))
    out["m"], out["v"] = m, v

    if isinstance(cfg, AdamConfig):
        den = _adam_denominator(order, cfg, k, M, v, vmax0, out)
    else:
        den = _setadam_denominator(order, cfg, k, M, flat, v, dtype, out)
    out["params"], out["update"] = _update(order, cfg, k, P, M, theta0, m, den, decoupled)
    out["overflow"] = np.array([OVERFLOW[0]])
    return out


def _adam_denominator(
    order: Order, cfg: AdamConfig, k: _Scalars, M: Arith, v: F, vmax0: F | None, out: dict[str, F]
) -> F:
    src = v
    optax_max = False
    if cfg.amsgrad:
        assert vmax0 is not None
        if cfg.amsgrad_mode == "torch":
            src = np.maximum(vmax0, v)
            out["vmax"] = src
        else:
            optax_max = True
    eps, eroot = k.at(k.eps, M), k.at(k.eps_root, M)
    how = order.denom if (order.denom != "torch" or k.eps_root == 0.0) else "root"
    if optax_max:
        assert vmax0 is not None
        vh = M.div(src, k.at(k.bc2, M))
        vm = np.maximum(vmax0, vh)
        out["vmax"] = vm
        den = M.add(M.sqrt(M.add(vm, eroot)), eps)
    elif how == "root":
        den = M.add(M.sqrt(M.add(M.div(src, k.at(k.bc2, M)), eroot)), eps)
    elif how == "recip":
        den = M.add(M.sqrt(M.add(M.mul(src, k.at(k.ibc2, M)), eroot)), eps)
    else:
        den = M.add(M.div(M.sqrt(src), k.at(k.sqrt_bc2, M)), eps)
    out["denom"] = den
    return den


def _setadam_denominator(
    order: Order,
    cfg: SETAdamConfig,
    k: _Scalars,
    M: Arith,
    flat: Flat,
    v: F,
    dtype: str,
    out: dict[str, F],
) -> F:
    got = [layer_cos2(v[flat.layer_id == i], order, dtype) for i in range(flat.n_layers)]
    cl = np.array([c for c, _ in got], dtype=np.float64)
    out["cos2"] = cl
    out["statistics_out_of_range"] = np.array([o for _, o in got], dtype=bool)
    ce = cl[flat.layer_id]
    vs = M.mul(ce, v)
    out["down_scaling"] = vs
    eps = k.at(k.eps, M)
    if order.embed == "div":
        w = M.sqrt(M.add(M.div(vs, k.at(k.bc2, M)), eps))
    elif order.embed == "recip":
        w = M.sqrt(M.add(M.mul(vs, k.at(k.ibc2, M)), eps))
    elif order.embed == "fma":
        w = M.sqrt(M.fma(vs, k.at(k.ibc2, M), eps))
    elif order.embed == "split":
        w = M.div(M.sqrt(M.add(vs, k.at(k.eps_bc2, M))), k.at(k.sqrt_bc2, M))
    else:  # cbc: the per-layer scalar c / bc2 in the scalar format
        cb = np.array([float(k.S.div(c, k.bc2)) for c in cl])
        cbe = cb[flat.layer_id]
        if k.native:
            cbe = M.r(cbe)
        w = M.sqrt(M.add(M.mul(v, cbe), eps))
    out["epsilon_embedding"] = w
    wmin = flat.layer_min(w)[flat.layer_id]
    tau = k.at(k.tau, M)
    if order.translate == "fma":
        wt = M.fma(-tau, wmin, w)
    else:
        wt = M.sub(w, M.mul(tau, wmin))
    out["down_translating"] = wt
    return wt


def _update(
    order: Order,
    cfg: Config,
    k: _Scalars,
    P: Arith,
    M: Arith,
    theta0: F,
    m: F,
    den: F,
    decoupled: bool,
) -> tuple[F, F]:
    """(new parameters, reported update) in the order's update and decay forms."""
    s = k.at(k.s, M)
    lr = k.at(k.lr, M)
    if decoupled and order.decay == "optax":
        mh = M.div(m, k.at(k.bc1, M))
        u = M.mul(lr, M.add(M.div(mh, den), M.mul(k.at(k.wd, M), theta0)))
        new = P.sub(theta0, u)
        return new, _report(order, P, new, theta0, None)
    base = P.mul(theta0, k.at(k.decay, P)) if decoupled else theta0
    if order.update == "fma":
        q = M.div(m, den)
        new = fma(-np.float64(s), q, base, P.dtype)
        return new, _report(order, P, new, theta0, None)
    if order.update == "q_first":
        u = M.mul(s, M.div(m, den))
    elif order.update == "addcdiv":
        u = M.div(M.mul(s, m), den)
    elif order.update == "mhat":
        u = M.mul(lr, M.div(M.div(m, k.at(k.bc1, M)), den))
    else:  # stepsize
        u = M.mul(M.div(s, den), m)
    new = P.sub(base, u)
    return new, _report(order, P, new, theta0, None if decoupled else -u)


def _report(order: Order, P: Arith, new: F, theta0: F, pre: F | None) -> F:
    """The port's reported update: its pre-addition update (when it is the whole change of the
    parameters, i.e. without decoupled decay) or theta_t - theta_{t-1} in its dtype."""
    if order.report == "diff" or pre is None:
        return P.sub(new, theta0)
    return pre
