r"""The fast path: the definition evaluated block by block, in cache, on a small thread pool.

The plain step (``setadam.setadam_step``, ``adam.adam_step``) streams every array through memory
once per operation; here the same chain of element-wise operations runs on blocks of ``BLOCK``
entries, so memory sees each input and output once, and blocks run on several threads (NumPy
releases the GIL inside its loops). Every element-wise operation is the plain step's, in the same
order; the layer sums are the very per-block ``scaled_sums`` and ``combine`` that define $c_l$;
(T) takes $\min_i w_{l,i}$ as $\sqrt{c_l \min_i v_{l,i} / b_2 + \epsilon}$, which is bitwise the
minimum of the computed $w$ because each correctly rounded operation is monotone (Lemma 4 of
docs/src/algorithms/setadam.md). So the results are bitwise those of the plain step, whatever
the thread count (``setadam_ref/tests/test_fast.py`` checks it). Untraced steps only.

``SETADAM_REF_THREADS`` (default: ``min(2, os.cpu_count())``) sets the pool size; 1 disables it.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np

from . import stages
from .arrays import F64Array
from .config import AdamConfig, SETAdamConfig
from .context import Context, context
from .layers import Layers
from .stages import ScaledSums, combine, embed, embed_scalar, scaled_sums, translate_by

# Below this many blocks a thread hand-off costs more than it saves.
_MIN_BLOCKS_FOR_THREADS = 8

R = TypeVar("R")


class Block(NamedTuple):
    """Entries ``start:stop`` of the flattened array ``array``."""

    array: int
    start: int
    stop: int


class Scratch(NamedTuple):
    """Two block-sized temporaries, one pair per thread."""

    t1: F64Array
    t2: F64Array


def split(sizes: Sequence[int]) -> list[Block]:
    """The blocks of arrays of the given sizes, array by array, in order (none for size 0)."""
    b = stages.BLOCK
    return [Block(i, a, min(a + b, n)) for i, n in enumerate(sizes) for a in range(0, n, b)]


_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def threads() -> int:
    """The pool size: ``SETADAM_REF_THREADS`` or ``min(2, os.cpu_count())``."""
    env = os.environ.get("SETADAM_REF_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError as exc:
            raise ValueError(f"SETADAM_REF_THREADS must be an integer, got {env!r}") from exc
    return max(1, min(2, os.cpu_count() or 1))


def _scratch(size: int) -> Scratch:
    s: Scratch | None = getattr(_local, "scratch", None)
    if s is None or s.t1.size < size:
        s = Scratch(np.empty(size), np.empty(size))
        _local.scratch = s
    return s


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="setadam_ref")
        return _pool


def map_blocks(fn: Callable[[Block, Scratch], R], blocks: Sequence[Block]) -> list[R]:
    """``[fn(b, scratch) for b in blocks]``, in order, on the pool when it pays."""
    n = threads()
    size = max((b.stop - b.start for b in blocks), default=0)
    if n == 1 or len(blocks) < _MIN_BLOCKS_FOR_THREADS:
        s = _scratch(size)
        return [fn(b, s) for b in blocks]
    return list(_get_pool(n).map(lambda b: fn(b, _scratch(size)), blocks))


class Result(NamedTuple):
    """Flat new values and the arrays the non-finite screen flagged (empty when not screening)."""

    params: list[F64Array]
    m: list[F64Array]
    v: list[F64Array]
    vmax: list[F64Array] | None
    suspects: list[int]


@dataclass
class _Work:
    """Flat 1-D float64 inputs (never written) and fresh outputs of one step."""

    p: Sequence[F64Array]
    g: Sequence[F64Array]
    m: Sequence[F64Array]
    v: Sequence[F64Array]
    check_finite: bool

    def __post_init__(self) -> None:
        self.p_out = [np.empty(a.size) for a in self.p]
        self.m_out = [np.empty(a.size) for a in self.p]
        self.v_out = [np.empty(a.size) for a in self.p]
        self.blocks = split([a.size for a in self.p])

    def moments(self, b: Block, s: Scratch, ctx: Context) -> F64Array:
        """Write block ``b`` of $m_t$, $v_t$ (``shared.effective_gradient``, ``shared.moments``
        in place, same operations); return the $v_t$ block. ``s.t1``, ``s.t2`` are clobbered."""
        i, sl, n = b.array, slice(b.start, b.stop), b.stop - b.start
        t1, t2 = s.t1[:n], s.t2[:n]
        g, p = self.g[i][sl], self.p[i][sl]
        if ctx.l2 != 0.0:
            np.multiply(p, ctx.l2, out=t2)
            g = np.subtract(t2, g, out=t2) if ctx.config.maximize else np.add(t2, g, out=t2)
        elif ctx.config.maximize:
            g = np.negative(g, out=t2)
        b1, b2 = ctx.config.betas
        m_out, v_out = self.m_out[i][sl], self.v_out[i][sl]
        np.multiply(self.m[i][sl], b1, out=m_out)
        np.multiply(g, 1.0 - b1, out=t1)
        np.add(m_out, t1, out=m_out)
        np.multiply(g, g, out=t1)
        np.multiply(t1, 1.0 - b2, out=t1)
        np.multiply(self.v[i][sl], b2, out=v_out)
        np.add(v_out, t1, out=v_out)
        return v_out

    def descend(self, b: Block, denom: F64Array, ctx: Context) -> bool:
        """Write block ``b`` of $\\theta_t$ (``shared.descend``; ``denom`` is clobbered); return
        whether the non-finite screen flags it."""
        i, sl = b.array, slice(b.start, b.stop)
        p, p_out = self.p[i][sl], self.p_out[i][sl]
        np.divide(self.m_out[i][sl], denom, out=denom)
        np.multiply(denom, ctx.lr_t, out=denom)
        if ctx.decay != 1.0:
            np.multiply(p, ctx.decay, out=p_out)
            np.subtract(p_out, denom, out=p_out)
        else:
            np.subtract(p, denom, out=p_out)
        return self.check_finite and not math.isfinite(float(p_out.sum()))

    def suspects(self, flags: Sequence[bool]) -> list[int]:
        return sorted({b.array for b, bad in zip(self.blocks, flags, strict=True) if bad})


def setadam_step(
    params: Sequence[F64Array],
    grads: Sequence[F64Array],
    m: Sequence[F64Array],
    v: Sequence[F64Array],
    config: SETAdamConfig,
    layers: Layers,
    t: int,
    check_finite: bool,
) -> Result:
    """``setadam.setadam_step`` with the definition, on flat 1-D float64 arrays."""
    ctx = context(config, t, layers)
    work = _Work(params, grads, m, v, check_finite)

    def first(b: Block, s: Scratch) -> ScaledSums:
        v_new = work.moments(b, s, ctx)
        return scaled_sums(v_new, s.t1)

    pieces: list[list[ScaledSums]] = [[] for _ in params]
    for b, sums in zip(work.blocks, map_blocks(first, work.blocks), strict=True):
        pieces[b.array].append(sums)
    c_of = [1.0] * len(params)
    w_min_of = [math.nan] * len(params)
    for layer in layers:
        lm = combine(p for i in layer for p in pieces[i])
        # Lemma 4: min w from min v through the very operations (S) and (E) apply to each entry.
        w_min = embed_scalar(lm.v_min * lm.cos2, ctx.bias_correction2, config.eps)
        for i in layer:
            c_of[i], w_min_of[i] = lm.cos2, w_min

    def second(b: Block, s: Scratch) -> bool:
        i, sl = b.array, slice(b.start, b.stop)
        w = s.t1[: b.stop - b.start]
        np.multiply(work.v_out[i][sl], c_of[i], out=w)
        embed(w, ctx.bias_correction2, config.eps, out=w)
        translate_by(w, config.tau, w_min_of[i], out=w)
        return work.descend(b, w, ctx)

    flags = map_blocks(second, work.blocks)
    return Result(work.p_out, work.m_out, work.v_out, None, work.suspects(flags))


def adam_step(
    params: Sequence[F64Array],
    grads: Sequence[F64Array],
    m: Sequence[F64Array],
    v: Sequence[F64Array],
    vmax: Sequence[F64Array] | None,
    config: AdamConfig,
    t: int,
    check_finite: bool,
) -> Result:
    """``adam.adam_step`` with the definition, on flat 1-D float64 arrays (``vmax``: amsgrad)."""
    ctx = context(config, t)
    work = _Work(params, grads, m, v, check_finite)
    vmax_out = None if vmax is None else [np.empty(a.size) for a in vmax]
    bc2 = ctx.bias_correction2
    tf = config.eps_mode == "tf"  # the root of the unscaled v (adam.vhat)

    def block(b: Block, s: Scratch) -> bool:
        i, sl = b.array, slice(b.start, b.stop)
        v_new = work.moments(b, s, ctx)
        d = s.t1[: b.stop - b.start]
        if vmax is not None and vmax_out is not None:
            vm_old, vm_new = vmax[i][sl], vmax_out[i][sl]
            if config.amsgrad_mode == "torch":
                np.maximum(vm_old, v_new, out=vm_new)
                if tf:
                    d[...] = vm_new
                else:
                    np.divide(vm_new, bc2, out=d)
            else:
                np.divide(v_new, bc2, out=d)
                np.maximum(vm_old, d, out=vm_new)
                d[...] = vm_new
        elif tf:
            d[...] = v_new
        else:
            np.divide(v_new, bc2, out=d)
        if config.eps_root != 0.0:
            np.add(d, config.eps_root, out=d)
        np.sqrt(d, out=d)
        np.add(d, config.eps, out=d)
        # An overflowed v gives denom = inf and a zero update, so v must be screened too.
        v_bad = work.check_finite and not math.isfinite(float(v_new.sum()))
        return work.descend(b, d, ctx) or v_bad

    flags = map_blocks(block, work.blocks)
    return Result(work.p_out, work.m_out, work.v_out, vmax_out, work.suspects(flags))
