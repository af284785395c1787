r"""Stage records of one step: the keys, the record a path fills, and the entries of skipped tensors.

A path that records (``RECORDS_STAGES = True``) returns, per tensor it stepped, under the names of
:mod:`setadam_ref.stage_names` (the one table of stage names; names only, no arithmetic):

* ``down_scaling``: $c_l v$, ``epsilon_embedding``: $w = \sqrt{c_l v/(1-\beta_2^t) + \epsilon}$,
  ``down_translating``: $\tilde w = w - \tau \min_l w$, all in the compute dtype;
* ``update``: $\theta_t - \theta_{t-1}$ in float64 (weight decay included);
* ``cos2``: $c_l$ of the tensor's layer, a 0-d float64 tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from setadam_ref import stage_names as N

from .dtypes import compute_dtype

STAGE_KEYS: tuple[str, ...] = N.RECORDABLE
"""The keys of ``SETAdam.last_stages`` (the stage-name table's recordable stages)."""

Stages = dict[str, list[Tensor]]


def new_stages(n: int) -> Stages:
    """A record for ``n`` tensors, every entry a placeholder to be overwritten."""
    return {k: [torch.empty(0)] * n for k in STAGE_KEYS}


def skipped_entry(p: Tensor, key: str) -> Tensor:
    """The entry of a parameter that was not stepped (``grad is None``): NaN stages and ``cos2``,
    a zero update (it did not move)."""
    if key == N.COS2:
        return torch.tensor(math.nan, dtype=torch.float64)
    if key == N.UPDATE:
        return torch.zeros_like(p, dtype=torch.float64, device=p.device)
    return torch.full_like(p, math.nan, dtype=compute_dtype(p.dtype), device=p.device)


class Recorder:
    """The stage record of one path's step, filled tensor by tensor."""

    def __init__(self, params: list[Tensor]) -> None:
        self.stages = new_stages(len(params))
        self._old = [p.detach().to(torch.float64, copy=True) for p in params]

    def embedded(self, i: int, scaled: Tensor, w: Tensor) -> None:
        """Tensor ``i``'s $c_l v$ and $w$ (both kept as given: pass copies)."""
        self.stages[N.DOWN_SCALING][i] = scaled
        self.stages[N.EPSILON_EMBEDDING][i] = w

    def updated(self, i: int, p: Tensor, wt: Tensor, c: Tensor) -> None:
        r"""Tensor ``i`` after its update: $\tilde w$, $c_l$ and $\theta_t - \theta_{t-1}$."""
        self.stages[N.DOWN_TRANSLATING][i] = wt
        self.stages[N.COS2][i] = c
        self.stages[N.UPDATE][i] = p.detach().to(torch.float64) - self._old[i]
