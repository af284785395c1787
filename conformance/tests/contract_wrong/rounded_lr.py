"""torch.optim.Adam with an lr a little off: the near misses of the groups and schedules families.

An outside implementer keeps the lr of a param group in a lower precision (a config file parsed
to float32, a scheduler computing its factors in float32) or one rounding away from the value
asked for. ``RoundedLRAdam`` rounds ``group["lr"]`` through ``ROUND`` for the groups ``GROUPS``
(None: all) at every ``step()`` and restores it after, so a scheduler sees its own value.
``NudgedSkipAdam`` moves a parameter without gradient by one ulp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def to_float32(x: float) -> float:
    """``x`` as a float32 value."""
    return float(np.float32(x))


def next_up(x: float) -> float:
    """The float64 after ``x``: one rounding away."""
    return float(np.nextafter(x, np.inf))


class RoundedLRAdam(torch.optim.Adam):
    ROUND: Callable[[float], float] = staticmethod(to_float32)
    GROUPS: tuple[int, ...] | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        saved = [g["lr"] for g in self.param_groups]
        for k, g in enumerate(self.param_groups):
            if self.GROUPS is None or k in self.GROUPS:
                g["lr"] = type(self).ROUND(float(g["lr"]))
        try:
            return super().step(closure)
        finally:
            for g, lr in zip(self.param_groups, saved, strict=True):
                g["lr"] = lr


def rounded(name: str, fn: Callable[[float], float], groups: tuple[int, ...] | None) -> Any:
    """A ``RoundedLRAdam`` class rounding through ``fn`` in ``groups``."""
    return type(name, (RoundedLRAdam,), {"ROUND": staticmethod(fn), "GROUPS": groups})


class NudgedSkipAdam(torch.optim.Adam):
    """torch.optim.Adam that moves a parameter without gradient by one ulp: a write-back of
    every parameter it holds state for, rounded up on the way (the sparse near miss)."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        skipped = [p for g in self.param_groups for p in g["params"]
                   if p.grad is None and p in self.state]  # fmt: skip
        out = super().step(closure)
        for p in skipped:
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
        return out
