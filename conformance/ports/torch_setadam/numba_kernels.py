r"""The two passes of the numba CPU path, compiled by numba (``@njit(parallel=True)``, IEEE
arithmetic, no fast-math on the step's arithmetic), one call per pass for all tensors of a dtype.

The tensors arrive as a table of addresses ``addr[i] = (θ, g, m, v)`` of 1-D dense memory
(:func:`_as_pointer` turns an address into a pointer that ``numba.carray`` wraps, the NumPy view of
a CPU tensor's memory without a Python object per tensor) and a table of *blocks*
``(tensor, start, stop)`` of at most ``BLOCK`` entries, so that ``prange`` splits a big tensor
over the threads and gives small tensors a block each.

:func:`stats` (first pass) computes the new $v$ of each tile of ``TILE`` entries into a buffer
that stays in the L1 cache, $v' = \beta_2 v + ((1-\beta_2) g) g$ with $g \leftarrow \pm g$
($+\lambda\theta$ for ``l2``), in the tensor dtype, and per block the partials of $v'$ that
:mod:`.compiled_kernels` gives per tensor: $\min v'$, $\max v'$, and $\sum v'$, $\sum v'^2$
accumulated in float64. It writes nothing to the tensors: it reads $g, v$ (and $\theta$ with
``l2``), 2 streams (3). The sums, min and max of a tile are taken in one loop compiled with
``reassoc`` only, so that it vectorises: the summation order changes, and the error bound of a
sum of $d$ non-negative terms, $\gamma_{d-1}$ relative, holds for every order. The blocks'
partials of a tensor are combined on the host (:func:`combine_blocks`). :func:`scaled_sums`
gives the sums of $2^{-600} v'$ and $2^{+600} v'$ (exact scalings) and of their squares, by one
more read of $g, v$, for the float64 layers whose magnitude needs them
(:func:`~.compiled_scalars.scaled_rows`).

:func:`step` (second pass) is the whole step of an entry from the layer's scalars, a per-tensor
table in the tensor dtype (the float64 scalars rounded once, as the compiled path's ``.to(cd)``
rounds them): $m' = \operatorname{lerp}(m, g, 1-\beta_1)$ as torch evaluates it ($m + w(g - m)$
for $w < 1/2$, $g - (g - m)(1 - w)$ otherwise), $v'$ by the first pass's expression (so the
layer's statistics are those of the stored $v'$, bit for bit), $\theta' = \theta\,\delta +
s\,m'/(\sqrt{a v' + \epsilon} - \text{shift})$. It reads $\theta, g, m, v$ and writes
$\theta, m, v$: 7 streams, 9 in all, as fused Adam's 7 plus the first pass's 2.

Why $v'$ twice rather than written by the first pass and read by the second (the same 9 streams:
moments then update): the square root and the division are the step's costly arithmetic (with the
data in the L1 cache, one thread: 0.8 ns an entry in float32 and 1.9 ns in float64 for the
update, 0.3 and 0.4 ns for the first pass's arithmetic), and in one pass with all the step's
memory traffic they overlap with it, as in torch's fused Adam; an update pass of its own waited
on them with little memory traffic to hide them behind (100 tensors of 21.5M parameters,
float32, 2 threads, kernels alone: moments 15.7 ms + update 13.2 ms against first pass 9.2 ms +
step 14.3 ms).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.numpy_support import carray

BLOCK = 1 << 16
"""Entries per block of work (a big tensor is split into blocks, one ``prange`` item each)."""
TILE = 1024
"""Entries whose new v is computed before their sums are taken (8 KiB of float64: in L1)."""
DOWN, UP = 2.0**-600, 2.0**600
# columns of the partials, as in compiled_kernels
VMIN, S1, S2, VMAX, S1_DOWN, S2_DOWN, S1_UP, S2_UP = range(8)
PARTIALS = 8
# columns of the group scalars and of the update table, as in compiled_kernels
ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2, SIGN, WEIGHT_DECAY, LERP_COMPLEMENT = range(6)
# LERP_COMPLEMENT: 1 - (1 - beta1) in the tensors' dtype, as torch's lerp rounds it
SCALE, SHIFT, STEP_SIZE, DECAY, EPS = range(5)


def _pointer_of(typingctx: Any, addr: Any) -> Any:
    """The ``void *`` of an integer address (``numba.carray`` wraps it with a dtype and size)."""
    sig = types.voidptr(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


_as_pointer: Any = intrinsic(_pointer_of)


# IEEE arithmetic (no fast-math), compiled once and cached on disk
_strict = numba.njit(nogil=True, cache=True, error_model="numpy")
_parallel = numba.njit(parallel=True, nogil=True, cache=True, error_model="numpy")
# reassociation only: the sums vectorise (any order is within the bound of a sum)
_reassoc = numba.njit(fastmath={"reassoc"}, nogil=True, cache=True, error_model="numpy")


@_reassoc
def _tile_sums(v: Any, bits: Any, out: Any, lo: Any, hi: Any) -> tuple[Any, Any]:
    r"""Add the sums of ``v`` to ``out`` (reassociated float64 sums) and return the running
    min and max of its bit patterns ``bits`` from ``lo``, ``hi``: for $v \ge 0$ the integer
    order of the patterns is the float order, and an integer min vectorises where a float min
    with NaN rules does not (a NaN entry makes the sums, hence the layer, NaN anyway). One
    loop: min and max beside the sums cost ~1 ms on 21.5M entries, a loop of their own 5-6 ms."""
    s1 = 0.0
    s2 = 0.0
    for i in range(v.shape[0]):
        x = np.float64(v[i])
        s1 += x
        s2 += x * x
        b = bits[i]
        lo = b if b < lo else lo
        hi = b if b > hi else hi
    out[S1] += s1
    out[S2] += s2
    return lo, hi


@_reassoc
def _tile_scaled_sums(v: Any, out: Any) -> None:
    r"""Add the sums of $2^{-600} v$, of its squares, of $2^{600} v$ and of its squares
    (exact scalings of float64 ``v``) to ``out`` (reassociated)."""
    d1 = 0.0
    d2 = 0.0
    u1 = 0.0
    u2 = 0.0
    for i in range(v.shape[0]):
        x = v[i]
        xd = x * DOWN
        xu = x * UP
        d1 += xd
        d2 += xd * xd
        u1 += xu
        u2 += xu * xu
    out[S1_DOWN] += d1
    out[S2_DOWN] += d2
    out[S1_UP] += u1
    out[S2_UP] += u2


@_strict
def _v_tile(p: Any, g: Any, v: Any, sc: Any, l2: bool, out: Any) -> None:
    r"""The new $v$ of one tile into ``out``, $\beta_2 v + ((1-\beta_2) g) g$ with
    $g \leftarrow \pm g\,(+\lambda\theta)$, in the dtype of ``sc`` (IEEE, one rounding per
    operation): the expression of :func:`_step_block`, so the statistics are those of the
    $v$ the step stores, bit for bit."""
    b2 = sc[BETA2]
    w2 = sc[ONE_MINUS_BETA2]
    sign = sc[SIGN]
    wd = sc[WEIGHT_DECAY]
    for i in range(v.shape[0]):
        gi = g[i] * sign
        if l2:
            gi = gi + wd * p[i]
        out[i] = v[i] * b2 + (w2 * gi) * gi


@_strict
def _view(addr: Any, t: int, j: int, lo: int, n: int, like: Any) -> Any:
    """Entries ``lo : lo + n`` of column ``j`` of tensor ``t``, as an array of ``like``'s dtype."""
    return carray(_as_pointer(addr[t, j] + lo * like.itemsize), n, like.dtype)


@_parallel
def stats(addr: Any, blocks: Any, sc: Any, ints: Any, l2: bool, out: Any) -> None:
    """First pass over every block: ``out[k]`` gets block ``k``'s partials of the new $v$, the
    scaled sums zero; nothing is written to the tensors (``sc`` in the tensors' dtype, ``ints``
    the (largest, smallest) integers of its width: the starting min and max of the bit
    patterns)."""
    for k in numba.prange(blocks.shape[0]):
        t, lo, n = blocks[k, 0], blocks[k, 1], blocks[k, 2] - blocks[k, 1]
        p = _view(addr, t, 0, lo, n, sc)
        g = _view(addr, t, 1, lo, n, sc)
        v = _view(addr, t, 3, lo, n, sc)
        tile = np.empty(TILE, dtype=sc.dtype)
        bits = tile.view(ints.dtype)
        o = out[k]
        o[:] = 0.0
        blo = ints[0]
        bhi = ints[1]
        for a in range(0, n, TILE):
            b = min(a + TILE, n)
            _v_tile(p[a:b], g[a:b], v[a:b], sc, l2, tile)
            blo, bhi = _tile_sums(tile[: b - a], bits[: b - a], o, blo, bhi)
        ends = np.empty(2, dtype=ints.dtype)
        ends[0] = blo
        ends[1] = bhi
        vals = ends.view(sc.dtype)
        o[VMIN] = vals[0]
        o[VMAX] = vals[1]


@_parallel
def scaled_sums(addr: Any, blocks: Any, sc: Any, l2: bool, out: Any) -> None:
    r"""The $2^{\mp 600}$-scaled sums of the new float64 $v$ of every block (the other columns
    of ``out`` zero), recomputed as :func:`stats` computes it, for the layers whose largest
    entry lies outside $[2^{-400}, 2^{400}]$ only (``sc``: the float64 group scalars)."""
    for k in numba.prange(blocks.shape[0]):
        t, lo, n = blocks[k, 0], blocks[k, 1], blocks[k, 2] - blocks[k, 1]
        p = _view(addr, t, 0, lo, n, sc)
        g = _view(addr, t, 1, lo, n, sc)
        v = _view(addr, t, 3, lo, n, sc)
        tile = np.empty(TILE, dtype=sc.dtype)
        o = out[k]
        o[:] = 0.0
        for a in range(0, n, TILE):
            b = min(a + TILE, n)
            _v_tile(p[a:b], g[a:b], v[a:b], sc, l2, tile)
            _tile_scaled_sums(tile[: b - a], o)


@_strict
def bump_steps(addr: Any, out: Any) -> None:
    """Add one to every float32 step counter at ``addr`` (0-d CPU tensors) and give the new
    values in ``out``: one call where ``torch._foreach_add_`` costs ~3 us a tensor."""
    for i in range(addr.shape[0]):
        s = carray(_as_pointer(addr[i]), 1, out.dtype)
        s[0] = s[0] + np.float32(1.0)
        out[i] = s[0]


@_parallel
def step(addr: Any, blocks: Any, sc: Any, l2: bool, table: Any) -> None:
    """Second pass: the moments and parameters of every block (``table`` row per tensor)."""
    for k in numba.prange(blocks.shape[0]):
        t, lo, n = blocks[k, 0], blocks[k, 1], blocks[k, 2] - blocks[k, 1]
        _step_block(
            _view(addr, t, 0, lo, n, sc), _view(addr, t, 1, lo, n, sc),
            _view(addr, t, 2, lo, n, sc), _view(addr, t, 3, lo, n, sc), sc, l2, table[t],
        )  # fmt: skip


@_strict
def _step_block(p: Any, g: Any, m: Any, v: Any, sc: Any, l2: bool, row: Any) -> None:
    r"""$m \leftarrow \operatorname{lerp}(m, g, 1-\beta_1)$, $v \leftarrow \beta_2 v +
    ((1-\beta_2) g) g$, $\theta \leftarrow \theta\delta + s m / (\sqrt{a v + \epsilon} -
    \text{shift})$ (IEEE, one rounding per operation, in the dtype of ``sc``)."""
    w1 = sc[ONE_MINUS_BETA1]
    b2 = sc[BETA2]
    w2 = sc[ONE_MINUS_BETA2]
    sign = sc[SIGN]
    wd = sc[WEIGHT_DECAY]
    # torch's lerp: the branch whose product is small; for w >= 1/2 (beta1 <= 1/2) the lower
    # branch m + w (g - m) is off by |g - m| u, which is many ulps of m' when m and g differ
    # in sign (beta1 = 0: m' = g exactly this way, not m + (g - m))
    low = w1 < 0.5
    c1 = sc[LERP_COMPLEMENT]
    a = row[SCALE]
    shift = row[SHIFT]
    s = row[STEP_SIZE]
    dec = row[DECAY]
    eps = row[EPS]
    for i in range(p.shape[0]):
        pi = p[i]
        gi = g[i] * sign
        if l2:
            gi = gi + wd * pi
        mi = m[i]
        d = gi - mi
        mn = mi + w1 * d if low else gi - d * c1
        vn = v[i] * b2 + (w2 * gi) * gi
        m[i] = mn
        v[i] = vn
        p[i] = pi * dec + s * mn / (np.sqrt(vn * a + eps) - shift)


def make_blocks(numels: np.ndarray) -> np.ndarray:
    """``(tensor, start, stop)`` rows cutting tensors of sizes ``numels`` into ``BLOCK``s."""
    per = (numels + BLOCK - 1) // BLOCK
    t = np.repeat(np.arange(numels.shape[0]), per)
    first = np.repeat(np.cumsum(per) - per, per)
    start = (np.arange(t.shape[0]) - first) * BLOCK
    stop = np.minimum(start + BLOCK, numels[t])
    return np.stack([t, start, stop], axis=1).astype(np.int64)


def combine_blocks(parts: np.ndarray, blocks: np.ndarray, n: int) -> np.ndarray:
    """Per-tensor partials (``n`` rows) from the blocks' (blocks of a tensor are adjacent)."""
    starts = np.flatnonzero(np.r_[True, blocks[1:, 0] != blocks[:-1, 0]])
    out = np.add.reduceat(parts, starts, axis=0)
    out[:, VMIN] = np.minimum.reduceat(parts[:, VMIN], starts)
    out[:, VMAX] = np.maximum.reduceat(parts[:, VMAX], starts)
    assert out.shape[0] == n
    return out
