"""The functional SET-Adam step ``setadam(...)`` (like ``torch.optim.adam.adam``) and the table of
paths it dispatches to.

A path is a module with ``step(group_tensors, layer_of, hyper, *, record)`` and a constant
``RECORDS_STAGES``. A new path is one more row of ``PATHS``. A group holding DTensors takes
the sharded variant of its path (``sharded_single``, ``sharded_foreach``:
:mod:`~conformance.ports.torch_setadam.sharded`), which all-gathers the layer partials between
:func:`~conformance.ports.torch_setadam.layer_stats.partials` and
:func:`~conformance.ports.torch_setadam.layer_stats.combine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from torch import Tensor

from . import compiled as _compiled
from . import fused as _fused
from . import multi_tensor as _multi_tensor
from . import numba_path as _numba_path
from . import single_tensor as _single_tensor
from .group import GroupTensors
from .hyper import Hyper
from .sharded import ShardedPath, any_dtensor
from .stages import Stages


class PathModule(Protocol):
    """What a path module provides."""

    RECORDS_STAGES: bool

    def step(
        self, g: GroupTensors, layer_of: list[int], hyper: Hyper, *, record: bool
    ) -> Stages | None: ...


PATHS: dict[str, PathModule] = {
    "single": _single_tensor,
    "foreach": _multi_tensor,
    "fused": _fused,
    "compiled": _compiled,
    "numba": _numba_path,
    "sharded_single": ShardedPath(_single_tensor),
    "sharded_foreach": ShardedPath(_multi_tensor),
}
"""The implementations by name: ``single`` (for-loop), ``foreach`` (multi-tensor), ``fused``
(CUDA kernels), ``compiled`` (``torch.compile`` CPU kernels), ``numba`` (numba CPU kernels), and the sharded variants of the
first two (DTensor parameters)."""


def path_name(*, foreach: bool, fused: bool, compiled: bool | str = False) -> str:
    """The path of the flags (``compiled``: True for inductor, ``"numba"`` for numba); ValueError
    when more than one is set or ``compiled`` is another string."""
    if isinstance(compiled, str) and compiled != "numba":
        raise ValueError(f'SETAdam: compiled must be a bool or "numba", got {compiled!r}')
    if foreach + fused + bool(compiled) > 1:
        raise ValueError(
            "SETAdam: foreach=True, fused=True and compiled=True are mutually exclusive"
        )
    if compiled:
        return "numba" if compiled == "numba" else "compiled"
    return "fused" if fused else "foreach" if foreach else "single"


def for_params(path: str, params: Sequence[Tensor]) -> str:
    """``path``, or its sharded variant when ``params`` hold a DTensor (ValueError for fused and
    compiled, which have none)."""
    if not any_dtensor(params):
        return path
    if path in ("fused", "compiled", "numba"):
        raise ValueError(f"SETAdam: {path}=True does not take DTensor parameters; use foreach")
    return "sharded_" + path


def run_path(
    path: str,
    g: GroupTensors,
    layer_of: list[int],
    hyper: Hyper,
    *,
    record: bool,
    members: Sequence[Tensor],
) -> Stages | None:
    """One step of path ``path`` on a group whose parameters are ``members`` (a sharded path
    exchanges statistics for all of them, stepped here or not)."""
    mod = PATHS[path]
    if isinstance(mod, ShardedPath):
        return mod.step(g, layer_of, hyper, record=record, members=members)
    return mod.step(g, layer_of, hyper, record=record)


def records_stages(path: str) -> bool:
    """Whether path ``path`` records stages (``False`` for ``fused`` and ``compiled``)."""
    return PATHS[path].RECORDS_STAGES


def setadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    layer_of: list[int],
    *,
    foreach: bool = False,
    fused: bool = False,
    compiled: bool | str = False,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    record: bool = False,
) -> Stages | None:
    """Functional SET-Adam step on lists of tensors (in place), like ``torch.optim.adam.adam``.

    ``layer_of[i]`` is the layer id of tensor ``i`` (tensors with equal ids form one layer).
    Returns the recorded stages when ``record`` is True and the path records stages, else None.
    The hyperparameters are not validated here (``SETAdam`` does that).
    """
    path = for_params(path_name(foreach=foreach, fused=fused, compiled=compiled), params)
    if not (len(params) == len(grads) == len(exp_avgs) == len(exp_avg_sqs) == len(state_steps)):
        raise ValueError("SETAdam: params, grads and state lists differ in length")
    if len(layer_of) != len(params):
        raise ValueError("SETAdam: layer_of must give one layer index per tensor")
    hyper = Hyper(lr, beta1, beta2, eps, tau, weight_decay, decoupled, maximize)
    g = GroupTensors(params, grads, exp_avgs, exp_avg_sqs, state_steps)
    return PATHS[path].step(g, layer_of, hyper, record=record)
