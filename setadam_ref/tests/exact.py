"""An independent evaluator of Adam and SET-Adam in exact rational arithmetic.

Every operation but the square root is exact (``fractions.Fraction``); square roots are taken
with ``decimal`` at 80 significant digits and turned back into fractions, so the results are
correct to far below float64's resolution. Written from the formulas of docs/, sharing no code
with the reference: it is the oracle of the oracle.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context
from fractions import Fraction

_CTX = Context(prec=80)

Vec = list[Fraction]


def fsqrt(x: Fraction) -> Fraction:
    if x < 0:
        raise ValueError("negative sqrt")
    d = _CTX.divide(_CTX.create_decimal(x.numerator), _CTX.create_decimal(x.denominator))
    return Fraction(_CTX.sqrt(d))


def F(x: float) -> Fraction:
    return Fraction(x)


def adam_exact(
    params: Sequence[Vec],
    grads: Sequence[Sequence[Vec]],
    *,
    lr: float,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float = 0.0,
    wd: float = 0.0,
    decoupled: bool = False,
    amsgrad: str | None = None,
    maximize: bool = False,
    tf: bool = False,
) -> list[list[Vec]]:
    """Parameters after each step (exact up to the 80-digit square roots); ``tf``: eps added to
    the unscaled root, the step size lr sqrt(1 - b2^t) / (1 - b1^t) (TensorFlow's form)."""
    p = [list(a) for a in params]
    m = [[Fraction(0)] * len(a) for a in p]
    v = [[Fraction(0)] * len(a) for a in p]
    vmax = [[Fraction(0)] * len(a) for a in p]
    out = []
    for t, gs in enumerate(grads, start=1):
        bc1 = 1 - F(b1) ** t
        bc2 = 1 - F(b2) ** t
        new_p = []
        for k, (pk, gk) in enumerate(zip(p, gs)):
            row = []
            for i, (th, g) in enumerate(zip(pk, gk)):
                g = -g if maximize else g
                if wd and not decoupled:
                    g = g + F(wd) * th
                m[k][i] = F(b1) * m[k][i] + (1 - F(b1)) * g
                v[k][i] = F(b2) * v[k][i] + (1 - F(b2)) * g * g
                if amsgrad == "torch":
                    vmax[k][i] = max(vmax[k][i], v[k][i])
                    vhat = vmax[k][i] / bc2
                elif amsgrad == "optax":
                    vmax[k][i] = max(vmax[k][i], v[k][i] / bc2)
                    vhat = vmax[k][i]
                else:
                    vhat = v[k][i] / bc2
                base = th * (1 - F(lr) * F(wd)) if (wd and decoupled) else th
                if tf:
                    raw = vmax[k][i] if amsgrad == "torch" else v[k][i]
                    step = F(lr) * fsqrt(bc2) / bc1 * m[k][i] / (fsqrt(raw + F(eps_root)) + F(eps))
                else:
                    step = F(lr) / bc1 * m[k][i] / (fsqrt(vhat + F(eps_root)) + F(eps))
                row.append(base - step)
            new_p.append(row)
        p = new_p
        out.append([list(a) for a in p])
    return out


def setadam_exact(
    params: Sequence[Vec],
    grads: Sequence[Sequence[Vec]],
    layers: Sequence[Sequence[int]],
    *,
    lr: float,
    b1: float,
    b2: float,
    eps: float,
    tau: float,
    wd: float = 0.0,
    decoupled: bool = False,
    maximize: bool = False,
) -> list[list[Vec]]:
    """Parameters after each step of SET-Adam."""
    p = [list(a) for a in params]
    m = [[Fraction(0)] * len(a) for a in p]
    v = [[Fraction(0)] * len(a) for a in p]
    out = []
    for t, gs in enumerate(grads, start=1):
        bc1 = 1 - F(b1) ** t
        bc2 = 1 - F(b2) ** t
        for k, (pk, gk) in enumerate(zip(p, gs)):
            for i, (th, g) in enumerate(zip(pk, gk)):
                g = -g if maximize else g
                if wd and not decoupled:
                    g = g + F(wd) * th
                m[k][i] = F(b1) * m[k][i] + (1 - F(b1)) * g
                v[k][i] = F(b2) * v[k][i] + (1 - F(b2)) * g * g
        new_p = [list(a) for a in p]
        for layer in layers:
            vl = [x for k in layer for x in v[k]]
            d = len(vl)
            s1, s2 = sum(vl, Fraction(0)), sum((x * x for x in vl), Fraction(0))
            c = Fraction(1) if s2 == 0 else s1 * s1 / (d * s2)
            w = {k: [fsqrt(c * x / bc2 + F(eps)) for x in v[k]] for k in layer}
            wmin = min(x for k in layer for x in w[k])
            for k in layer:
                for i, th in enumerate(p[k]):
                    wt = w[k][i] - F(tau) * wmin
                    base = th * (1 - F(lr) * F(wd)) if (wd and decoupled) else th
                    new_p[k][i] = base - F(lr) / bc1 * m[k][i] / wt
        p = new_p
        out.append([list(a) for a in p])
    return out
