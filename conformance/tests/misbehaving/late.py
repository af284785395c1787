"""Adam that misbehaves late, at the sixth call to its step(): inside a batch of
free-running steps (batches of 1, 2, 4, ... steps: the sixth step is the third of the third)."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

LATE_CALL = 6


class _Late(torch.optim.Adam):
    def misbehave(self) -> None:
        pass

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        self._calls = getattr(self, "_calls", 0) + 1  # this optimizer's (the adapter probes others)
        if self._calls == LATE_CALL:
            self.misbehave()
        return super().step(closure)


class Fine(_Late):
    """Adam: nothing goes wrong."""


class Raises(_Late):
    def misbehave(self) -> None:
        raise RuntimeError("late failure")


class Exits(_Late):
    def misbehave(self) -> None:
        os._exit(3)


class Hangs(_Late):
    def misbehave(self) -> None:
        time.sleep(3600)
