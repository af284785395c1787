"""Torch Adam ports with amsgrad, as an outside implementer writes them, whose running maximum
lives where the harness can neither find nor write it: a module-level cache keyed by the
parameter's ``id`` (the author's idea: keep ``optimizer.state`` small in checkpoints).

- ``CachedPeakAdam``: correct mathematics. After a harness reset its maximum is the one of the
  reset's zero-gradient step (0), not the given vmax: re-synced it would look wrong, so its
  re-synced steps must be *not judged* (state discovery finds no vmax), never failed;
- ``ForgetfulPeakAdam``: caches the current v instead of the maximum, so its denominator uses
  max(v_{t-1}, v_t): wrong as soon as v falls two steps in a row, which free-running shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

#: id(parameter) -> its running maximum of v (outside the optimizer: nothing walks to it)
_PEAKS: dict[int, Tensor] = {}


class CachedPeakAdam(torch.optim.Optimizer):
    """Adam (L2 weight decay, torch's amsgrad) with the maximum in ``_PEAKS``."""

    forget = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad}  # fmt: skip
        super().__init__(params, defaults)
        for group in self.param_groups:  # a fresh optimizer starts without a maximum
            for p in group["params"]:
                _PEAKS.pop(id(p), None)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p if group["weight_decay"] else p.grad
                st = self.state[p]
                if not st:
                    st["n"] = 0
                    st["avg"] = torch.zeros_like(p)
                    st["avg_sq"] = torch.zeros_like(p)
                st["n"] += 1
                st["avg"].mul_(b1).add_(g, alpha=1 - b1)
                st["avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                v = st["avg_sq"]
                if group["amsgrad"]:
                    peak = _PEAKS.get(id(p))
                    v = v.clone() if peak is None else torch.maximum(peak, v)
                    _PEAKS[id(p)] = st["avg_sq"].clone() if self.forget else v
                bc1, bc2 = 1 - b1 ** st["n"], 1 - b2 ** st["n"]
                denom = (v.sqrt() / bc2**0.5).add_(group["eps"])
                p.addcdiv_(st["avg"], denom, value=-group["lr"] / bc1)


class ForgetfulPeakAdam(CachedPeakAdam):
    """Caches v_t, not max(vmax_{t-1}, v_t): the maximum is over the last two steps only."""

    forget = True
