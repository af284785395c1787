"""SET-Adam and Adam in PyTorch as an outside implementer writes them, with one hook per line
that can go wrong (the meta-tests' planted ports with their own state containers).

Written from the mathematics (ALGORITHM.md), never from ``setadam_ref``. ``SetAdamMath.step`` and
``AdamMath.step`` take a group's parameters, gradients and moment tensors (updated in place) and
the stored counter, and return the new stored counter; where the state lives is the container's
business (``outside_torch``). A planted bug replaces hooks: ``SETADAM_BUGS`` / ``ADAM_BUGS`` map
a catalogue entry's name to the hooks its mistake replaces, each written as the mistake would be
written in a port (``conformance/wrong_ports/outside_bugs.py``).

Hooks receive a ``Frame``: the step's hyperparameters, its counter and bias corrections, and the
group's flat raw gradients, previous and current v and w, so that a mistake that looks at the
wrong quantity (another step's, another layer's) can be written directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

Segment = tuple[int, int]


@dataclass
class Hyper:
    lr: float
    b1: float
    b2: float
    eps: float
    weight_decay: float
    decoupled: bool
    maximize: bool
    tau: float = 0.5
    eps_root: float = 0.0
    amsgrad: bool = False


@dataclass
class Frame:
    """What every hook may look at during one step of one parameter group."""

    hp: Hyper
    shapes: list[torch.Size]
    t: int = 0
    bc1: float = 1.0
    bc2: float = 1.0
    g: Tensor | None = None  # flat raw gradients
    v_prev: Tensor | None = None  # flat v before the step
    v: Tensor | None = None  # flat v after the moment update
    w: Tensor | None = None  # flat w after (E)
    extra: dict[str, Any] = field(default_factory=dict)

    def segments(self) -> list[Segment]:
        out, start = [], 0
        for s in self.shapes:
            n = int(torch.Size(s).numel())
            out.append((start, start + n))
            start += n
        return out


Hook = Callable[..., Any]


# ----------------------------------------------------------------------------- shared hooks
def advance(t_stored: int) -> tuple[int, int]:
    """(counter to store, step t to use): incremented before use, starting from 0."""
    return t_stored + 1, t_stored + 1


def bias(f: Frame) -> tuple[float, float]:
    return 1.0 - f.hp.b1**f.t, 1.0 - f.hp.b2**f.t


def grad(f: Frame, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """(gradient for m, gradient for v): maximize, then coupled weight decay."""
    if f.hp.maximize:
        g = -g
    if f.hp.weight_decay and not f.hp.decoupled:
        g = g + f.hp.weight_decay * p
    return g, g


def moments(f: Frame, m: Tensor, v: Tensor, gm: Tensor, gv: Tensor) -> None:
    m.mul_(f.hp.b1).add_(gm, alpha=1 - f.hp.b1)
    v.mul_(f.hp.b2).addcmul_(gv, gv, value=1 - f.hp.b2)


def decay(f: Frame, p: Tensor) -> None:
    if f.hp.weight_decay and f.hp.decoupled:
        p.mul_(1 - f.hp.lr * f.hp.weight_decay)


def apply(f: Frame, p: Tensor, m: Tensor, denom: Tensor) -> None:
    p.sub_(f.hp.lr / f.bc1 * m / denom)


# ----------------------------------------------------------------------------- SET-Adam hooks
def layers(f: Frame) -> list[Segment]:
    return f.segments()


def cos2(f: Frame, v: Tensor, seg: Segment) -> Tensor:
    """cos^2(v, 1) through the mean and the mean square (scale-free); 1 on an all-zero layer."""
    ms = (v * v).mean()
    if float(ms) == 0.0:
        return torch.ones((), dtype=v.dtype)
    return v.mean() ** 2 / ms


def embed(f: Frame, vs: Tensor, v: Tensor, c: Tensor) -> Tensor:
    return torch.sqrt(vs / f.bc2 + f.hp.eps)


def layer_min(f: Frame, w: Tensor, seg: Segment, c: Tensor) -> Tensor:
    return w.min()


def translate(f: Frame, w: Tensor, w_min: Tensor) -> Tensor:
    return w - f.hp.tau * w_min


SETADAM_HOOKS: dict[str, Hook] = {
    "advance": advance, "bias": bias, "grad": grad, "moments": moments, "decay": decay,
    "apply": apply, "layers": layers, "translate_layers": layers, "cos2": cos2, "embed": embed,
    "layer_min": layer_min, "translate": translate,
}  # fmt: skip


class SetAdamMath:
    """One SET-Adam step of a parameter group, from hooks (defaults: the algorithm)."""

    def __init__(self, hooks: dict[str, Hook] | None = None) -> None:
        self.h = {**SETADAM_HOOKS, **(hooks or {})}

    def step(
        self, hp: Hyper, params: list[Tensor], grads: list[Tensor], ms: list[Tensor],
        vs: list[Tensor], t_stored: int, extra: dict[str, Any] | None = None,
    ) -> int:  # fmt: skip
        h = self.h
        f = Frame(hp, [p.shape for p in params], extra=extra if extra is not None else {})
        t_stored, f.t = h["advance"](t_stored)
        f.bc1, f.bc2 = h["bias"](f)
        f.g = torch.cat([g.reshape(-1) for g in grads])
        f.v_prev = torch.cat([v.reshape(-1) for v in vs]).clone()
        for p, g, m, v in zip(params, grads, ms, vs, strict=True):
            gm, gv = h["grad"](f, p, g)
            h["moments"](f, m, v, gm, gv)
        f.v = torch.cat([v.reshape(-1) for v in vs])
        scaled = torch.empty_like(f.v)
        w = torch.empty_like(f.v)
        c_of = torch.empty_like(f.v)
        for a, b in h["layers"](f):
            if b > a:
                c = h["cos2"](f, f.v[a:b], (a, b))
                scaled[a:b] = c * f.v[a:b]
                c_of[a:b] = c
                w[a:b] = h["embed"](f, scaled[a:b], f.v[a:b], c)
        f.w = w
        wt = torch.empty_like(w)
        for a, b in h["translate_layers"](f):
            if b > a:
                wt[a:b] = h["translate"](f, w[a:b], h["layer_min"](f, w[a:b], (a, b), c_of[a]))
        start = 0
        for p, m in zip(params, ms, strict=True):
            n = p.numel()
            h["decay"](f, p)
            h["apply"](f, p, m, wt[start : start + n].view_as(p))
            start += n
        return int(t_stored)


# ----------------------------------------------------------------------------- Adam hooks
def vmax(f: Frame, v: Tensor, v_max: Tensor | None) -> Tensor:
    """The v the denominator uses: v itself, or (amsgrad) the running maximum of raw v."""
    if v_max is None:
        return v
    torch.maximum(v_max, v, out=v_max)
    return v_max


def denom(f: Frame, v_used: Tensor) -> Tensor:
    return torch.sqrt(v_used / f.bc2 + f.hp.eps_root) + f.hp.eps


ADAM_HOOKS: dict[str, Hook] = {
    "advance": advance, "bias": bias, "grad": grad, "moments": moments, "decay": decay,
    "apply": apply, "vmax": vmax, "denom": denom,
}  # fmt: skip


class AdamMath:
    """One Adam step of a parameter group, from hooks (defaults: the algorithm)."""

    def __init__(self, hooks: dict[str, Hook] | None = None) -> None:
        self.h = {**ADAM_HOOKS, **(hooks or {})}

    def step(
        self, hp: Hyper, params: list[Tensor], grads: list[Tensor], ms: list[Tensor],
        vs: list[Tensor], t_stored: int, vmaxes: list[Tensor] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:  # fmt: skip
        h = self.h
        f = Frame(hp, [p.shape for p in params], extra=extra if extra is not None else {})
        t_stored, f.t = h["advance"](t_stored)
        f.bc1, f.bc2 = h["bias"](f)
        for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs, strict=True)):
            f.extra["index"] = i  # which array the hooks below are working on
            gm, gv = h["grad"](f, p, g)
            h["moments"](f, m, v, gm, gv)
            used = h["vmax"](f, v, vmaxes[i] if vmaxes is not None else None)
            h["decay"](f, p)
            h["apply"](f, p, m, h["denom"](f, used))
        return int(t_stored)
