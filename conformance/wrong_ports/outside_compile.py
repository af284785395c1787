"""A planted torch SET-Adam port with a branch that only ``torch.compile`` takes.

Authors of compile-friendly optimizers branch on ``torch.compiler.is_compiling()`` (torch.optim
does: step tensors instead of ``.item()`` under compile). ``CompileBranchSETAdam`` is the
storage-order port of ``outside_layouts`` (correct in eager) whose compiled branch forms the
bias correction of v from the counter before its increment, ``1 - beta2^(t-1)``: the first
compiled step divides by zero and every later one scales v by the wrong correction. Eager runs
never take the branch, so only the ``compiled`` family (``torch.compile(opt.step)``) shows it.
"""

from __future__ import annotations

import torch

from .outside_layouts import StorageOrderFixedSETAdam


class CompileBranchSETAdam(StorageOrderFixedSETAdam):
    """Correct eagerly; under ``torch.compile`` the v correction lags one step."""

    def _corrections(self, b1: float, b2: float, k: int) -> tuple[float, float]:
        if torch.compiler.is_compiling():  # the planted mistake: the pre-increment counter
            return 1 - b1**k, 1 - b2 ** (k - 1)
        return super()._corrections(b1, b2, k)


#: planted port -> the family that exposes it
PLANTED: dict[str, str] = {"CompileBranchSETAdam": "compiled"}
