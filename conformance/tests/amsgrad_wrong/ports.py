"""Torch Adam ports with amsgrad, as an outside implementer writes them, whose running maximum
lives where the harness can neither find nor write it: a module-level cache keyed by the
parameter's ``id`` (the author's idea: keep ``optimizer.state`` small in checkpoints). Both are
the Dict-style outside Adam (``conformance.wrong_ports.outside_torch``) with the maximum moved
out of its container (which keeps a ``max_exp_avg_var`` of zeros, never updated).

- ``CachedPeakAdam``: correct mathematics. After a harness reset its maximum is the one of the
  reset's zero-gradient step (0), not the given vmax: re-synced it would look wrong, so its
  re-synced steps must be *not judged* (state discovery finds no vmax), never failed;
- ``ForgetfulPeakAdam``: caches the current v instead of the maximum, so its denominator uses
  max(v_{t-1}, v_t): wrong as soon as v falls two steps in a row, which free-running shows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from conformance.wrong_ports.outside_torch import PORTS

#: id(parameter) -> its running maximum of v (outside the optimizer: nothing walks to it)
_PEAKS: dict[int, Tensor] = {}


class CachedPeakAdam(PORTS["DictAdam"]):  # type: ignore[misc,valid-type]
    """The Dict-style outside Adam with the maximum in ``_PEAKS``."""

    forget = False

    def _setup(self) -> None:
        for group in self.param_groups:  # a fresh optimizer starts without a maximum
            for p in group["params"]:
                _PEAKS.pop(id(p), None)

    def _run(
        self, group: dict[str, Any], params: list[Tensor], ms: list[Tensor], vs: list[Tensor],
        vmaxes: list[Tensor] | None, t: int, scratch: dict[str, Any],
    ) -> int:  # fmt: skip
        if vmaxes is not None:
            vmaxes = [_PEAKS.setdefault(id(p), torch.zeros_like(p)) for p in params]
        t = int(super()._run(group, params, ms, vs, vmaxes, t, scratch))
        if vmaxes is not None and self.forget:
            for p, v in zip(params, vs, strict=True):
                _PEAKS[id(p)] = v.clone()
        return t


class ForgetfulPeakAdam(CachedPeakAdam):
    """Caches v_t, not max(vmax_{t-1}, v_t): the maximum is over the last two steps only."""

    forget = True
