"""Full arrays from the ranks' local pieces, and one step's outputs from every rank's outputs.

A rank of a sharded port answers its *local* arrays: for a tensor split along dimension 0 its
shard (possibly with no row), for a replicated one the whole tensor. Which it is follows from
the shapes alone, given the full shape the harness expects: pieces whose shapes equal it are a
replicated tensor (rank 0's is taken); pieces that agree with it beyond dimension 0 and whose
rows add up to it are shards, concatenated in rank order. Anything else is passed on as rank 0's
piece, and the driver reports the shape it did not expect. No framework and no collective is
involved, so reading a step's results can never hang on a misbehaving rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..interface import PortState
from ..session import StepOutputs


def full_array(pieces: Sequence[Any], shape: tuple[int, ...]) -> Any:
    """The full array of ``shape`` from one piece per rank (see the module docstring)."""
    arrs = [np.asarray(p) for p in pieces]
    if any(a.dtype.kind not in "biuf" for a in arrs):
        return pieces[0]
    if all(a.shape == shape for a in arrs):
        return arrs[0]
    if shape and all(a.ndim == len(shape) and a.shape[1:] == shape[1:] for a in arrs):
        if sum(a.shape[0] for a in arrs) == shape[0]:
            return np.concatenate(arrs, axis=0)
    return pieces[0]


def full_arrays(per_rank: Sequence[Any], shapes: Sequence[tuple[int, ...]]) -> Any:
    """Per tensor, the full array from every rank's list of pieces (rank 0's list when the
    lists do not match the expected number of tensors)."""
    try:
        lists = [list(x) for x in per_rank]
    except TypeError:
        return per_rank[0]
    if any(len(x) != len(shapes) for x in lists):
        return per_rank[0]
    return [full_array([x[j] for x in lists], tuple(s)) for j, s in enumerate(shapes)]


def merge(outs: Sequence[StepOutputs], shapes: Sequence[tuple[int, ...]]) -> StepOutputs:
    """One step's outputs of a sharded port from every rank's, in rank order: full parameters,
    moments and stages (``cos2`` and other 0-d entries are rank 0's), every rank's side effects,
    and step counts that differ between ranks as a side effect of their own."""
    first = outs[0]
    params = full_arrays([o.params for o in outs], shapes)
    state: PortState | None = None
    if first.state is not None and all(o.state is not None for o in outs):
        sts = [o.state for o in outs if o.state is not None]
        m = None if any(s.m is None for s in sts) else full_arrays([s.m for s in sts], shapes)
        v = None if any(s.v is None for s in sts) else full_arrays([s.v for s in sts], shapes)
        state = PortState(first.state.step, m, v)
    stages: dict[str, Any] | None = None
    if first.stages is not None and all(o.stages is not None for o in outs):
        stages = {}
        for key, val in first.stages.items():
            ranks = [o.stages.get(key) if o.stages is not None else None for o in outs]
            stages[key] = val if any(r is None for r in ranks) else full_arrays(ranks, shapes)
    effects: list[str] = []
    for r, o in enumerate(outs):
        effects.extend(f"rank {r}: {e}" for e in o.side_effects)
    steps = [o.state.step if o.state is not None else None for o in outs]
    if len(set(steps)) > 1:
        effects.append(f"the ranks' step counts differ after step(): {steps}")
    return StepOutputs(params, state, stages, effects)
