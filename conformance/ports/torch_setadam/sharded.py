r"""The sharded paths: SET-Adam on DTensor parameters split across ranks (FSDP2's ``Shard(0)``).

A :class:`ShardedPath` wraps the single-tensor or foreach path. It unwraps every DTensor of the
group (parameter, gradient, ``exp_avg``, ``exp_avg_sq``) to its local tensor, runs the wrapped
path's arithmetic on the local shards, and swaps that path's layer statistics for
:func:`~conformance.ports.torch_setadam.shard_stats.sharded_scalars`, which combines the shards'
partial sums across the ranks in one collective per param group and step. Everything
element-wise is local: a DTensor's local tensor is its shard without padding, so an uneven
split or a rank holding no row of a tensor needs nothing special.

What a group may hold: DTensors on a 1-D mesh placed ``Shard(d)`` (any dimension $d$: the
statistics do not depend on the layout) or ``Replicate()``, and plain tensors; all sharded
tensors of a group share one mesh, whose process group carries the collective. A gradient or
moment must have its parameter's placements. Other layouts (``Partial``, meshes of 2 or more
dimensions) raise ``ValueError``; so does ``fused=True``.

Every rank of the mesh must step the group the same number of times: the collective happens on
every step of a group that holds a sharded tensor, whether or not this rank has gradients for it,
so a rank without gradients never leaves the others waiting. Recorded stages of a sharded
parameter are DTensors with its placements (``full_tensor()`` gathers them); ``cos2`` is a plain
0-d tensor, equal on every rank.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Protocol

import torch.distributed as dist
from torch import Tensor

from setadam_ref import stage_names as N

from .group import GroupTensors
from .hyper import Hyper
from .layer_stats import Reduced, Scalars, ScalarsFn
from .shard_stats import ShardedGroup, exchange, neutral, sharded_scalars
from .stages import Stages, new_stages

_DTENSOR_MODULE = "torch.distributed.tensor"


class InnerPath(Protocol):
    """A path whose layer statistics can be swapped (single-tensor, foreach)."""

    RECORDS_STAGES: bool

    def step(
        self,
        g: GroupTensors,
        layer_of: list[int],
        hyper: Hyper,
        *,
        record: bool,
        scalars: ScalarsFn = ...,
    ) -> Stages | None: ...


def is_dtensor(t: object) -> bool:
    """Whether ``t`` is a DTensor (without importing torch.distributed.tensor: no DTensor can
    exist before that module is loaded)."""
    mod = sys.modules.get(_DTENSOR_MODULE)
    return mod is not None and isinstance(t, mod.DTensor)


def any_dtensor(params: Sequence[Tensor]) -> bool:
    """Whether a group holds a DTensor, so that it takes a sharded path."""
    mod = sys.modules.get(_DTENSOR_MODULE)
    # the module looked up once per group: once per parameter it cost ~1 ms a step on 1000
    return mod is not None and any(isinstance(p, mod.DTensor) for p in params)


def _placement_kind(p: Any) -> str:
    """``shard``, ``replicate`` or ``local`` for member ``p``; ValueError for other layouts."""
    if not is_dtensor(p):
        return "local"
    mod = sys.modules[_DTENSOR_MODULE]
    if p.device_mesh.ndim != 1:
        raise ValueError(
            f"SETAdam: DTensor parameters on a {p.device_mesh.ndim}-D mesh are not supported "
            "(the layer statistics are reduced over a 1-D mesh)"
        )
    (pl,) = p.placements
    if isinstance(pl, mod.Shard):
        return "shard"
    if isinstance(pl, mod.Replicate):
        return "replicate"
    raise ValueError(f"SETAdam: DTensor placement {pl} is not supported (Shard or Replicate)")


def layout_of(members: Sequence[Tensor], stepped: Sequence[Tensor]) -> ShardedGroup:
    """The sharding of a group with parameters ``members`` of which ``stepped`` have gradients."""
    pos = {id(p): j for j, p in enumerate(members)}
    sharded: list[int] = []
    mesh: Any = None
    for j, p in enumerate(members):
        if _placement_kind(p) != "shard":
            continue
        m = p.device_mesh  # type: ignore[attr-defined]
        if mesh is None:
            mesh = m
        elif m != mesh:
            raise ValueError(
                "SETAdam: the sharded parameters of one param group must share one device mesh "
                "(their layer statistics are exchanged in one collective)"
            )
        sharded.append(j)
    pg: dist.ProcessGroup | None = None if mesh is None else mesh.get_group(0)
    world = 1 if mesh is None else int(mesh.size())
    return ShardedGroup(
        n_members=len(members),
        stepped=tuple(pos[id(p)] for p in stepped),
        sharded=tuple(sharded),
        global_numel=tuple(int(p.numel()) for p in members),
        process_group=pg,
        world=world,
    )


def _layout_differs(t: Any, like: Any) -> bool:
    if t.placements != like.placements:
        return True
    return t.device_mesh is not like.device_mesh and bool(t.device_mesh != like.device_mesh)


def _local(t: Tensor, like: Tensor, what: str) -> Tensor:
    """The local tensor of ``t``, which must be laid out as its parameter ``like``."""
    if not is_dtensor(like):
        if is_dtensor(t):
            raise ValueError(f"SETAdam: a {what} is a DTensor but its parameter is not")
        return t
    if not is_dtensor(t):
        raise ValueError(
            f"SETAdam: the {what} of a DTensor parameter must be a DTensor with the same "
            f"placements, got a {type(t).__name__}"
        )
    if t is not like and _layout_differs(t, like):
        raise ValueError(
            f"SETAdam: the {what} has placements {tuple(t.placements)}, its parameter "  # type: ignore[attr-defined]
            f"{tuple(like.placements)}; redistribute it first"  # type: ignore[attr-defined]
        )
    # the DTensor's own local tensor, not ``to_local()``: that goes through an autograd function
    # (about 20 us a call, four calls per parameter and step: milliseconds per step for 100
    # tensors, as much as the statistics themselves), and the step runs under no_grad anyway
    local: Tensor = t._local_tensor  # type: ignore[attr-defined]
    return local


def unwrap(g: GroupTensors) -> GroupTensors:
    """The group's local tensors (views: the wrapped path updates the DTensors in place)."""
    ps = g.params
    return GroupTensors(
        [_local(p, p, "parameter") for p in ps],
        [_local(x, p, "gradient") for x, p in zip(g.grads, ps)],
        [_local(x, p, "exp_avg") for x, p in zip(g.exp_avgs, ps)],
        [_local(x, p, "exp_avg_sq") for x, p in zip(g.exp_avg_sqs, ps)],
        list(g.state_steps),
    )


def _as_dtensor(mod: Any, local: Tensor, like: Any) -> Tensor:
    """``local`` as a DTensor laid out as ``like`` (its global shape given: shards may be uneven)."""
    d: Tensor = mod.DTensor.from_local(
        local,
        like.device_mesh,
        like.placements,
        run_check=False,
        shape=like.shape,
        stride=like.stride(),
    )
    return d


def _wrap_stages(stages: Stages, stepped: Sequence[Tensor]) -> Stages:
    """Local stage tensors as DTensors laid out as their parameters (``cos2`` stays 0-d)."""
    mod = sys.modules.get(_DTENSOR_MODULE)
    if mod is None:
        return stages
    out: Stages = {}
    for key, vals in stages.items():
        if key == N.COS2:
            out[key] = vals
            continue
        out[key] = [_as_dtensor(mod, x, p) if is_dtensor(p) else x for x, p in zip(vals, stepped)]
    return out


class ShardedPath:
    """A path that runs ``inner``'s arithmetic on local shards with the layer statistics
    exchanged across ranks (see the module docstring)."""

    RECORDS_STAGES = True

    def __init__(self, inner: InnerPath) -> None:
        self.inner = inner

    def step(
        self,
        g: GroupTensors,
        layer_of: list[int],
        hyper: Hyper,
        *,
        record: bool,
        members: Sequence[Tensor] | None = None,
    ) -> Stages | None:
        """One step of the group ``members`` (default: the stepped tensors ``g.params``)."""
        members = list(g.params) if members is None else list(members)
        lay = layout_of(members, g.params)
        if not g.params:
            if lay.sharded:
                # no gradient here, but the other ranks wait for this rank's columns
                dev = members[lay.sharded[0]]._local_tensor.device  # type: ignore[attr-defined]
                exchange(neutral(len(members), dev), lay)
            return new_stages(0) if record else None
        local = unwrap(g)

        def scalars(
            params: Sequence[Tensor],
            reds: dict[int, Reduced],
            layer_of: Sequence[int],
            bias2: Sequence[float],
            *,
            eps: float,
            tau: float,
        ) -> Scalars:
            # read when the wrapped path asks: it has incremented the step counts by then
            steps = [float(s) for s in g.state_steps]
            return sharded_scalars(lay, steps, params, reds, layer_of, bias2, eps=eps, tau=tau)

        got = self.inner.step(local, layer_of, hyper, record=record, scalars=scalars)
        return None if got is None else _wrap_stages(got, g.params)
