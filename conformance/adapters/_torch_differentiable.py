"""torch's ``differentiable=True`` driven as torch's own tests drive it.

A differentiable optimizer steps with grad enabled (torch.optim's ``_use_grad_for_differentiable``),
so its in-place update of a parameter is recorded by autograd; on a leaf that requires grad it
is an error ("a leaf Variable that requires grad is being used in an in-place operation"). torch's
tests (``test/optim/test_optim.py``, ``_diff_fn``) therefore step non-leaf clones of such leaves:
``p = leaf.clone()``, ``p.grad = grad``, ``opt = cls([p], differentiable=True)``, ``opt.step()``.
:func:`build` does the same for the harness: it builds the optimizer on leaf tensors and, when it
says it is differentiable, rebuilds it on their clones (the graph then grows by one update per
step; the scenarios are short and their tensors small).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def is_differentiable(opt: Any) -> bool:
    """Whether a torch optimizer was built with ``differentiable=True`` (any group)."""
    groups = getattr(opt, "param_groups", None) or []
    defaults = getattr(opt, "defaults", None) or {}
    return bool(defaults.get("differentiable")) or any(g.get("differentiable") for g in groups)


def build(make: Callable[[list[Any]], Any], params: list[Any]) -> tuple[Any, list[Any]]:
    """``(optimizer, params)`` for ``make(params)``: ``params`` themselves, or for a
    differentiable optimizer non-leaf clones of them (each requires grad through its leaf)."""
    opt = make(params)
    if not is_differentiable(opt):
        return opt, params
    clones = [p.clone() if p.requires_grad and p.is_leaf else p for p in params]
    return make(clones), clones
