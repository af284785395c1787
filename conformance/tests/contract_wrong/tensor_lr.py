"""torch Adams that mishandle a 0-d tensor ``group["lr"]`` or param groups: the probe's two sides.

``InertTensorLRAdam`` has the method but does nothing with a tensor lr (its author's fast path
bails out on anything but a float): the harness's probe step sees the parameter unmoved and
skips the scenario as not supported. ``Float32TensorLRAdam`` takes it and reads it through
``.float()`` (meant for half-precision runs), so a float64 run steps with the lr rounded to
float32: it moves the probe's parameter, so it is judged, and fails.
"""

from __future__ import annotations

from typing import Any

import torch


class InertTensorLRAdam(torch.optim.Adam):
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if any(torch.is_tensor(g["lr"]) for g in self.param_groups):
            return None  # the bug: a tensor lr is not handled, and nothing says so
        return super().step(closure)


class Float32TensorLRAdam(torch.optim.Adam):
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        saved = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            if torch.is_tensor(g["lr"]):
                g["lr"] = g["lr"].float().item()  # the bug: float32 for every dtype
        try:
            return super().step(closure)
        finally:
            for g, lr in zip(self.param_groups, saved, strict=True):
                g["lr"] = lr


class OneGroupAdam(torch.optim.Adam):
    """torch.optim.Adam that refuses more than one param group with options of its own (its
    author's launcher takes one set of hyperparameters): not supported, said by the probe."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:  # fmt: skip
        groups = list(params)
        if sum(1 for g in groups if isinstance(g, dict) and len(g) > 1) > 1:
            raise ValueError("one set of hyperparameters per optimizer")
        super().__init__(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
