r"""Layer statistics of sharded tensors: one all-gather of the packed partials per param group.

SET-Adam's down-scaling and down-translating need, for every layer, $\sum v$, $\sum v^2$ and
$\min v$ over the *whole* layer. When a tensor is split across the ranks of a process group (a
DTensor ``Shard(d)`` over a 1-D mesh, FSDP2's layout) each rank sees only its shard, so the
shards' partial statistics must be combined across ranks before $c_l$ and $\min_l w$ are formed,
or every rank computes a different, wrong $c_l$ (the ZeRO-1 norm bug of llm.c PR 524).

Per param group and step, each rank packs one column per sharded tensor of the group, in group
order (a fixed width: a tensor this rank has no gradient for still has its column),

$$
\big(\textstyle\sum_i v_i 2^{-e},\ \sum_i (v_i 2^{-e})^2,\ \min_i v_i,\ e,\ t\big),
$$

the table of :func:`~conformance.ports.torch_setadam.layer_stats.partials` plus the tensor's step
count $t$ ($-1$ without a gradient). An empty local shard (fewer rows than ranks, a zero-size
tensor) packs the neutral column $(0, 0, +\infty, e_{\min}, t)$; uneven shards are the
DTensor's local tensors, without padding, so padding is never counted. The ``(5, k)`` float64
tables of all ranks are exchanged in **one** all-gather (``all_gather_single``, or
``all_gather_into_tensor`` before it; ``40 k`` bytes sent and
``40 k N`` received per rank and step), and every rank merges them in the same order, so every
rank gets the same bits of $c_l$ and $\min_l w$ whatever the backend's reduction order:

* $E = \max_r e_r$; $S_1 = \sum_r S_{1,r} 2^{e_r - E}$, $S_2 = \sum_r S_{2,r} 2^{2(e_r - E)}$
  (scaling by a power of two is exact unless the product falls below $2^{-1022}$, i.e. a shard
  whose maximum is $2^{-1022}$ times the tensor's, whose contribution is then below
  $d\,2^{-1020}$ relative); $\min v = \min_r \min v_r$; the column's $e$ is $E$.
* The merge is a summation tree over the same non-negative terms as an unsharded sum, with one
  addition per non-empty shard beyond the first (adding an empty shard's $0$ is exact), so the
  recursive-summation bound $|\hat S - S| \le \gamma_{d-1} S$ of the unsharded sum still holds;
  against the local sums it adds at most $(N-1)u$ relative to $S_1$ and $S_2$ ($u = 2^{-53}$).
* A column whose ranks disagree about $t$ (a step counter that drifted, or a gradient on some
  ranks only) gets NaN sums, so its layer's parameters become NaN on every rank: a loud failure,
  like a non-finite gradient, detected without reading a device value back to the host.

The merged columns then go through the unsharded
:func:`~conformance.ports.torch_setadam.layer_stats.step_scalars` with the tensors' global sizes.
Replicated DTensors and plain tensors of the group are complete on every rank and are not
exchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .dtypes import compute_dtype
from .layer_stats import (
    EXP,
    EXP_MIN,
    SUM,
    SUMSQ,
    VMIN,
    Reduced,
    Scalars,
    layer_index,
    partials,
    pow2,
    step_scalars,
    upload,
)

STEP = 4
"""Row of the exchanged table holding each tensor's step count ($-1$ without a gradient)."""
ROWS = 5


@dataclass(frozen=True)
class ShardedGroup:
    """How a param group is laid out across ranks, as the statistics need it.

    ``stepped``: the positions in ``members`` of the tensors stepped on this rank, in order;
    ``sharded``: the positions in ``members`` of the tensors split across ``process_group``
    (their columns are exchanged); ``global_numel[j]``: entries of ``members[j]`` over all ranks.
    """

    n_members: int
    stepped: tuple[int, ...]
    sharded: tuple[int, ...]
    global_numel: tuple[int, ...]
    process_group: dist.ProcessGroup | None
    world: int


def neutral(k: int, dev: torch.device) -> Tensor:
    """The ``(ROWS, k)`` table of ``k`` tensors with no entries on this rank and no gradient."""
    t = torch.zeros((ROWS, k), dtype=torch.float64, device=dev)
    t[VMIN] = math.inf
    t[EXP] = float(EXP_MIN)
    t[STEP] = -1.0
    return t


def local_table(
    layout: ShardedGroup,
    reds: dict[int, Reduced],
    steps: Sequence[float],
    dev: torch.device,
) -> Tensor:
    """This rank's ``(ROWS, n_members)`` table: ``reds[i]`` and ``steps[i]`` are those of the
    ``i``-th stepped tensor (``reds`` only for local shards with entries)."""
    table = neutral(layout.n_members, dev)
    have = sorted(reds)
    if have:
        cols = upload([layout.stepped[i] for i in have], torch.int64, dev)
        table[:4].index_copy_(1, cols, partials([reds[i] for i in have], dev))
    if layout.stepped:
        cols = upload(layout.stepped, torch.int64, dev)
        table[STEP].index_copy_(0, cols, upload(list(steps), torch.float64, dev))
    return table


def merge(gathered: Tensor) -> Tensor:
    """The ``(ROWS, k)`` table of whole tensors from the ``(N, ROWS, k)`` tables of ``N`` ranks
    (see the module docstring); NaN sums where the ranks' step counts differ."""
    e = gathered[:, EXP]
    top = e.amax(0)
    k = (e - top).to(torch.int64)
    one = pow2(k)
    s1 = (gathered[:, SUM] * one).sum(0)
    # two factors: 2^{2k} may leave pow2's range where 2^k does not
    s2 = (gathered[:, SUMSQ] * one * one).sum(0)
    vmin = gathered[:, VMIN].amin(0)
    t = gathered[:, STEP]
    drift = (t != t[0]).any(0)
    s1, s2, vmin = (torch.where(drift, math.nan, x) for x in (s1, s2, vmin))
    return torch.stack([s1, s2, vmin, top, t[0]])


def exchange(table: Tensor, layout: ShardedGroup) -> Tensor:
    """``table`` with the columns of the sharded tensors merged over the ranks: the one
    collective of the group's step (none when the group has no sharded tensor)."""
    if not layout.sharded or layout.world == 1:
        return table
    cols = upload(layout.sharded, torch.int64, table.device)
    mine = table.index_select(1, cols).reshape(-1)
    # flat buffers: backends differ in which stacked shapes they accept (gloo wants dim 0 x N)
    out = torch.empty(layout.world * mine.numel(), dtype=mine.dtype, device=mine.device)
    # all_gather_single where torch has it (it deprecates all_gather_into_tensor, the same op)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, mine, group=layout.process_group)
    return table.index_copy(1, cols, merge(out.view(layout.world, ROWS, len(layout.sharded))))


def sharded_scalars(
    layout: ShardedGroup,
    steps: Sequence[float],
    params: Sequence[Tensor],
    reds: dict[int, Reduced],
    layer_of: Sequence[int],
    bias2: Sequence[float],
    *,
    eps: float,
    tau: float,
) -> Scalars:
    """The scalars of (S), (E), (T) for the stepped local tensors ``params`` (the signature of
    :func:`~conformance.ports.torch_setadam.layer_stats.group_scalars` after ``layout`` and
    ``steps``, the stepped tensors' step counts)."""
    dev = params[0].device
    table = exchange(local_table(layout, reds, steps, dev), layout)
    numels = [layout.global_numel[j] for j in layout.stepped]
    index = layer_index(numels, layer_of, dev)
    cols = upload([layout.stepped[i] for i in index.rows], torch.int64, dev)
    parts = table[:4].index_select(1, cols)
    cds = [compute_dtype(p.dtype) for p in params]
    devs = [p.device for p in params]
    return step_scalars(parts, index, bias2, cds, devs, eps=eps, tau=tau)
