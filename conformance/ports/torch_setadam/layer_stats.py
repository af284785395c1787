r"""Layer statistics as device tensors: per-tensor partial sums, their combination per layer, and
the per-tensor scalars of the down-scaling (S) and down-translating (T) stages.

For layer $l$ with $d_l$ entries $v_{l,i}$ the down-scaling coefficient is

$$
c_l = \frac{\left(\sum_i v_{l,i}\right)^2}{d_l \sum_i v_{l,i}^2} \in \left[\tfrac{1}{d_l}, 1\right],
$$

and $\min_l w = \sqrt{a \min_l v + \epsilon}$ with $a = c_l/(1-\beta_2^t)$, because
$w = \sqrt{a v + \epsilon}$ is increasing in $v$. Everything here is tensor arithmetic on the
parameters' device: no value is read back to the host, so a CUDA step never synchronises. The
only host data are the tensor sizes, the layering and the step counts.

Three steps, kept apart so that a sharded path can reduce across ranks between 1 and 2:

1. :func:`reduce` takes each local tensor's $\min v$, $\max v$, $\sum v$ and $\sum v^2$ (right
   after the moment update, while $v$ is in cache), and :func:`partials` assembles them into one
   column per tensor of a float64 ``(4, k)`` table
   $\big(\sum_i v_i 2^{-e},\ \sum_i (v_i 2^{-e})^2,\ \min_i v_i,\ e\big)$, where $2^e$ is the
   binade of $\max_i v_i$ ($\max v = m\,2^e$, $m \in [\tfrac12, 1)$). Columns of different
   tensors, or of the shards of one tensor, combine by rescaling, summing and taking minima, so a
   sharded path would all-gather this table (one collective per param group) and go on.
2. :func:`combine` takes per layer $E_l = \max e$, rescales each column by $2^{e - E_l}$ and
   sums: $S_1 = \sum_i v_i 2^{-E_l}$, $S_2 = \sum_i v_i^2 2^{-2E_l}$, then
   $c_l = S_1^2/(d_l S_2)$ clamped to $[1/d_l, 1]$.
3. :func:`step_scalars` gives every tensor its layer's $c_l$, $a = c_l/(1-\beta_2^t)$ (the
   tensor's own step count) and the shift $\tau \min_l w$, the last two rounded to the tensor's
   compute dtype, as the element-wise kernels use them. :func:`group_scalars` runs 1 (after
   :func:`reduce`) to 3 for a param group.

Numerics. The sums accumulate in float64 (on CPU over float64 copies of 512 KiB chunks, elsewhere
in ``torch._foreach_norm(dtype=float64)``). Scaling by a power of two is exact and leaves $c_l$
unchanged, so nothing can overflow or underflow: the scaled maximum lies in $[\tfrac12, 4)$ (in
$[2^{-53}, \tfrac12)$ when $\max v$ is a float64 subnormal), so $2^{-106} \le S_2 \le 16\,d_l$
and $S_1 \le 4\,d_l$. Float64 entries are scaled before they are summed (their squares would
leave float64's range for $v$ outside about $[10^{-154}, 10^{154}]$); float32, bfloat16 and
float16 entries are summed as they are (their float64 squares cannot overflow or underflow) and
the sums are scaled afterwards. The scale factors are built bit by bit (:func:`pow2`), not by
``exp2``/``pow``, whose accuracy is the library's. An entry below $2^{-1022}$ times its layer's
maximum may lose bits or vanish in the scaling; that changes $S_1$ and $S_2$ by less than
$d_l 2^{-1022}$ relative. An all-zero layer has no angle and gets $c_l = 1$ ($c_l v = 0$ whatever
$c_l$ is). A NaN or infinite $v$ makes its layer's $c_l$ and shift NaN. The per-layer reductions
go through a padded ``(L, width)`` table reduced along its rows, not through atomics, so they are
deterministic on CUDA too.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from .dtypes import compute_dtype

SUM, SUMSQ, VMIN, EXP = 0, 1, 2, 3
"""Rows of the partial-sums table."""

EXP_MIN, EXP_MAX = -1021, 1022
r"""Clamp of the binade exponent $e$: keeps $2^{-e}$ a normal float64 (an exact scale) for
subnormal and near-overflow float64 $v$ alike."""


def upload(
    values: Sequence[float] | Sequence[int], dtype: torch.dtype, dev: torch.device
) -> Tensor:
    """Host values to ``dev`` without a host synchronisation (pinned, non-blocking on CUDA)."""
    t = torch.tensor(values, dtype=dtype)
    if dev.type == "cuda":
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)


def pow2(k: Tensor) -> Tensor:
    """$2^k$ in float64 for an int64 tensor ``k <= 1023``, exactly: the IEEE bit pattern is built
    with integer operations; 0 where ``k < -1022`` (below the normal range: clamped to -1023,
    whose biased exponent 0 with a zero fraction is +0.0)."""
    biased = torch.clamp(k, min=-1023) + 1023
    return torch.bitwise_left_shift(biased, 52).view(torch.float64)


def binade(vmax: Tensor) -> Tensor:
    r"""int64 $e$ with ``vmax`` $= m\,2^e$, $m \in [\tfrac12, 1)$, clamped to
    ``[EXP_MIN, EXP_MAX]``; ``EXP_MIN`` where ``vmax`` is 0 or NaN (such a tensor must not set its
    layer's scale)."""
    if vmax.dtype == torch.float64:
        # frexp's exponent read from the bits: inductor's vectorised float64 frexp emits C++ that
        # does not compile (torch 2.13, AVX-512), which broke torch.compile(opt.step). Equal to
        # frexp after the clamp: normal numbers have e = biased exponent - 1022; subnormals
        # (biased 0) give -1022 < EXP_MIN; inf (biased 2047) gets frexp's exponent 0
        biased = torch.bitwise_right_shift(vmax.view(torch.int64), 52).bitwise_and_(2047)
        e = torch.where(biased == 2047, 0, biased - 1022)
    else:
        e = torch.frexp(vmax).exponent.to(torch.int64)
    return torch.where(vmax > 0, e, EXP_MIN).clamp_(EXP_MIN, EXP_MAX)


CPU_CHUNK = 1 << 16
"""Entries per float64 chunk of the CPU sums (512 KiB): the float64 copy of a chunk stays in L2
between its sum and its dot product."""


class Reduced(NamedTuple):
    r"""One tensor's reductions, 0-d float64 tensors on its device: $\min v$, $\max v$, and
    $\sum v$, $\sum v^2$ of its entries, times $2^{-e}$ and $2^{-2e}$ when ``prescaled``
    (float64 $v$), unscaled otherwise."""

    vmin: Tensor
    vmax: Tensor
    s1: Tensor
    s2: Tensor
    prescaled: bool


def sums_chunked(v: Tensor, scale: Tensor | None) -> tuple[Tensor, Tensor]:
    r"""$\sum x$ and $\sum x^2$ in float64 of $x = v$ (``scale`` None) or $x = v \cdot$ ``scale``,
    chunk by chunk (the CPU route: one float64 copy per chunk, summed, then its dot product)."""
    s1: list[Tensor] = []
    s2: list[Tensor] = []
    for part in torch.split(v.reshape(-1), CPU_CHUNK):
        x = part.to(torch.float64) if scale is None else torch.mul(part, scale)
        s1.append(x.sum())
        s2.append(torch.dot(x, x))
    if len(s1) == 1:
        return s1[0], s2[0]
    return torch.stack(s1).sum(), torch.stack(s2).sum()


def sums_foreach(
    vs: Sequence[Tensor], scales: Sequence[Tensor] | None
) -> list[tuple[Tensor, Tensor]]:
    r"""$\sum x$ and $\sum x^2$ in float64 per tensor through ``torch._foreach_norm(dtype=float64)``
    (the CUDA route: the kernels widen on the fly; $\sum x$ is the 1-norm as $x \ge 0$)."""
    f64 = torch.float64
    ts = list(vs) if scales is None else list(torch._foreach_mul(list(vs), list(scales)))
    n1 = torch._foreach_norm(ts, 1, dtype=f64)
    n2 = torch._foreach_norm(ts, 2, dtype=f64)
    return [(a, b * b) for a, b in zip(n1, n2)]


def _cpu_route(v: Tensor) -> bool:
    return v.device.type == "cpu"


def reduce(vs: Sequence[Tensor]) -> list[Reduced]:
    """The reductions of non-empty second moments of one dtype and device, tensor by tensor.

    On CPU every tensor goes through :func:`sums_chunked` whatever the list, so the single-tensor
    and foreach paths get bitwise equal results; elsewhere :func:`sums_foreach` takes the list.
    Float64 $v$ is scaled by $2^{-e}$ before it is summed (its squares can leave float64's
    range); every other dtype is summed as it is, its float64 sums cannot overflow or underflow.
    """
    mm = [torch.aminmax(v) for v in vs]
    vmin = [x.min.to(torch.float64) for x in mm]
    vmax = [x.max.to(torch.float64) for x in mm]
    prescaled = vs[0].dtype == torch.float64
    scales = pow2(-binade(torch.stack(vmax))).unbind() if prescaled else None
    if _cpu_route(vs[0]):
        sums = [sums_chunked(v, None if scales is None else scales[j]) for j, v in enumerate(vs)]
    else:
        sums = sums_foreach(vs, scales)
    return [Reduced(lo, hi, s[0], s[1], prescaled) for lo, hi, s in zip(vmin, vmax, sums)]


def partials(reds: Sequence[Reduced], dev: torch.device) -> Tensor:
    """The float64 ``(4, k)`` table ``(SUM, SUMSQ, VMIN, EXP)`` on ``dev`` of ``k`` reduced
    tensors (see the module docstring); ``(4, 0)`` for none. Every operation is exact."""
    if not reds:
        return torch.empty((4, 0), dtype=torch.float64, device=dev)

    vmin = torch.stack([r.vmin.to(dev) for r in reds])
    vmax = torch.stack([r.vmax.to(dev) for r in reds])
    s1 = torch.stack([r.s1.to(dev) for r in reds])
    s2 = torch.stack([r.s2.to(dev) for r in reds])
    e = binade(vmax)
    flags = [r.prescaled for r in reds]
    if not all(flags):
        scale = pow2(-e)
        if any(flags):
            scale = torch.where(upload(flags, torch.bool, dev), 1.0, scale)
        # two multiplications: 2^{-2e} may lie outside pow2's range, each 2^{-e} does not
        s1, s2 = s1 * scale, s2 * scale * scale
    return torch.stack([s1, s2, vmin, e.to(torch.float64)])


@dataclass(frozen=True)
class LayerIndex:
    """Where each tensor's statistics go; built on the host once per (device, sizes, layering).

    The columns of the partials table are the tensors with entries, in order (``rows``). Layers
    are numbered densely in order of first appearance among them; a tensor whose layer has no
    entries (only zero-size tensors) gets layer ``n_layers``, whose $c$ is 1.
    """

    rows: tuple[int, ...]
    n_layers: int
    width: int  # most tensors in one layer: the per-layer table is (n_layers, width)
    dense: bool  # the columns already form that table (one layer per tensor, or one layer)
    slot: Tensor  # int64 (R,): position of each column in the flattened table
    row_layer: Tensor  # int64 (R,)
    rows_t: Tensor  # int64 (R,): ``rows`` on the device
    tensor_layer: Tensor  # int64 (n,)
    d: Tensor  # float64 (n_layers,): entries per layer


_INDEXES: OrderedDict[tuple[object, ...], LayerIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 16


def layer_index(numels: Sequence[int], layer_of: Sequence[int], dev: torch.device) -> LayerIndex:
    """The (cached) index of tensors of sizes ``numels`` in layers ``layer_of`` on ``dev``."""
    key = (dev, tuple(numels), tuple(layer_of))
    hit = _INDEXES.get(key)
    if hit is not None:
        _INDEXES.move_to_end(key)
        return hit
    rows = [i for i, k in enumerate(numels) if k > 0]
    dense_id: dict[int, int] = {}
    row_layer = [dense_id.setdefault(layer_of[i], len(dense_id)) for i in rows]
    n_layers = len(dense_id)
    count = [0] * n_layers
    d = [0] * n_layers
    rank = []
    for i, lay in zip(rows, row_layer):
        rank.append(count[lay])
        count[lay] += 1
        d[lay] += numels[i]
    width = max(count, default=1)
    slot = [lay * width + r for lay, r in zip(row_layer, rank)]
    i64 = torch.int64
    index = LayerIndex(
        rows=tuple(rows),
        n_layers=n_layers,
        width=width,
        dense=slot == list(range(len(rows))) and len(rows) == n_layers * width,
        slot=upload(slot, i64, dev),
        row_layer=upload(row_layer, i64, dev),
        rows_t=upload(rows, i64, dev),
        tensor_layer=upload([dense_id.get(lay, n_layers) for lay in layer_of], i64, dev),
        d=upload([float(x) for x in d], torch.float64, dev),
    )
    _INDEXES[key] = index
    while len(_INDEXES) > _INDEX_CACHE_SIZE:
        _INDEXES.popitem(last=False)
    return index


def _table(x: Tensor, index: LayerIndex, fill: float) -> Tensor:
    """The ``(n_layers, width)`` table of per-column values ``x``, padded with ``fill``."""
    if index.dense:
        return x.reshape(index.n_layers, index.width)
    flat = torch.full((index.n_layers * index.width,), fill, dtype=x.dtype, device=x.device)
    return flat.index_copy_(0, index.slot, x).view(index.n_layers, index.width)


def combine(parts: Tensor, index: LayerIndex) -> Tensor:
    """$c_l$ per layer (float64, ``(n_layers,)``) from the partials table of ``index.rows``."""
    if index.width == 1:
        # one column per layer (one layer per tensor): E_l = e, every rescale factor is 1
        s1, s2 = parts[SUM], parts[SUMSQ]
    else:
        e = parts[EXP]
        top = _table(e, index, -math.inf).amax(1)
        k = (e - top.index_select(0, index.row_layer)).to(torch.int64)
        s1 = _table(parts[SUM] * pow2(k), index, 0.0).sum(1)
        s2 = _table(parts[SUMSQ] * pow2(2 * k), index, 0.0).sum(1)
    c = torch.maximum(s1 * s1 / (index.d * s2), 1.0 / index.d).clamp_(max=1.0)
    return torch.where(s2 == 0.0, 1.0, c)


class Scalars(NamedTuple):
    r"""Per tensor, 0-d tensors on its device: ``c`` (float64, its layer's $c_l$), ``a``
    ($c_l/(1-\beta_2^t)$) and ``shift`` ($\tau\min_l w$), both in its compute dtype."""

    c: list[Tensor]
    a: list[Tensor]
    shift: list[Tensor]


def _w_at_vmin(a: Tensor, vmin: Tensor, cds: Sequence[torch.dtype], eps: float) -> Tensor:
    r"""$\sqrt{a \min v + \epsilon}$ per column, each rounded as its tensor's element-wise
    kernels round $w$ (compute dtype ``cds[j]``), returned in float64 (exactly)."""
    kinds = list(dict.fromkeys(cds))
    if len(kinds) <= 1:
        cd = kinds[0] if kinds else torch.float64
        return torch.sqrt(a.to(cd) * vmin.to(cd) + eps).to(torch.float64)
    out = torch.empty_like(a)
    for cd in kinds:
        idx = upload([j for j, x in enumerate(cds) if x == cd], torch.int64, a.device)
        w = torch.sqrt(a.index_select(0, idx).to(cd) * vmin.index_select(0, idx).to(cd) + eps)
        out.index_copy_(0, idx, w.to(torch.float64))
    return out


def _moved(t: Tensor, dev: torch.device) -> Tensor:
    """``t`` on ``dev``: asynchronously onto a CUDA device; onto the CPU from CUDA only in a group
    that mixes CPU and CUDA tensors, where the copy waits for the device."""
    return t.to(dev, non_blocking=dev.type == "cuda")


def step_scalars(
    parts: Tensor,
    index: LayerIndex,
    bias2: Sequence[float],
    cds: Sequence[torch.dtype],
    devices: Sequence[torch.device],
    *,
    eps: float,
    tau: float,
) -> Scalars:
    r"""The scalars of (S), (E), (T) for every tensor, from the partials of ``index.rows``.

    ``bias2[i]`` is $1-\beta_2^t$ of tensor ``i`` (step counts may differ within a layer when
    some tensors had no gradient in earlier steps), ``cds[i]`` its compute dtype and
    ``devices[i]`` its device (the scalars of a tensor on another device than ``parts`` are
    copied there).
    """
    dev = parts.device
    c_layer = combine(parts, index)
    c_t = torch.cat([c_layer, c_layer.new_ones(1)]).index_select(0, index.tensor_layer)
    if all(b == bias2[0] for b in bias2):
        a_t = c_t / bias2[0]
    else:
        a_t = c_t / upload(list(bias2), torch.float64, dev)
    w_min = _w_at_vmin(
        a_t.index_select(0, index.rows_t), parts[VMIN], [cds[i] for i in index.rows], eps
    )
    w_min_layer = _table(w_min, index, math.inf).amin(1)
    no_min = w_min_layer.new_full((1,), math.nan)
    shift_t = torch.cat([w_min_layer * tau, no_min]).index_select(0, index.tensor_layer)
    keys = list(zip(cds, devices))
    a_by = {k: _moved(a_t.to(k[0]), k[1]).unbind() for k in dict.fromkeys(keys)}
    s_by = {k: _moved(shift_t.to(k[0]), k[1]).unbind() for k in dict.fromkeys(keys)}
    c_by = {d: _moved(c_t, d).unbind() for d in dict.fromkeys(devices)}
    return Scalars(
        [c_by[k[1]][i] for i, k in enumerate(keys)],
        [a_by[k][i] for i, k in enumerate(keys)],
        [s_by[k][i] for i, k in enumerate(keys)],
    )


class ScalarsFn(Protocol):
    """The signature of :func:`group_scalars`: what a path calls for its layer scalars (a sharded
    path passes one that exchanges the partials across ranks)."""

    def __call__(
        self,
        params: Sequence[Tensor],
        reds: dict[int, Reduced],
        layer_of: Sequence[int],
        bias2: Sequence[float],
        *,
        eps: float,
        tau: float,
    ) -> Scalars: ...


def group_scalars(
    params: Sequence[Tensor],
    reds: dict[int, Reduced],
    layer_of: Sequence[int],
    bias2: Sequence[float],
    *,
    eps: float,
    tau: float,
) -> Scalars:
    """Steps 1 to 3 for a param group: ``reds[i]`` holds the reductions of every ``params[i]``
    with entries; the table goes to the device of ``params[0]``."""
    dev = params[0].device
    index = layer_index([p.numel() for p in params], layer_of, dev)
    parts = partials([reds[i] for i in index.rows], dev)
    cds = [compute_dtype(p.dtype) for p in params]
    devs = [p.device for p in params]
    return step_scalars(parts, index, bias2, cds, devs, eps=eps, tau=tau)
