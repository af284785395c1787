"""A path step that ``torch.compile`` of a caller runs eagerly, behind a graph break.

Dynamo cannot trace into numba: it follows numba's dispatcher in Python and fails inside it
(``AssertionError: exception table entry start instruction has no offset``, torch 2.13, numba
0.68), and its NumPy tracing (``trace_numpy``, on by default) would compile the host's float64
arithmetic of the layer scalars as torch operations of its own.
:func:`eager_only` wraps a step so that, while dynamo traces a caller such as
``torch.compile(opt.step)``, the call is to ``torch.compiler.disable(step)``: dynamo breaks the
graph there and the step runs as Python, unchanged. Outside tracing the step is called directly.

The disabled twin is made on the first traced call, not at import: importing dynamo takes
~1.7 s, and a process that never compiles never needs it (dynamo runs that one call of
``torch.compiler.disable`` itself eagerly, behind one more graph break, once per process).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


def eager_only(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn``, behind a graph break when a caller is being traced by dynamo (bitwise the eager
    call: the same function runs on the same inputs)."""
    disabled: list[Callable[P, R]] = []

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if not torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        if not disabled:
            disable: Any = torch.compiler.disable  # untyped in torch
            disabled.append(disable(fn, reason="numba kernels run eagerly"))
        return disabled[0](*args, **kwargs)

    return call
