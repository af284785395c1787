r"""One rank's side of a sharded torch port: a torch.optim-style optimizer on DTensor parameters.

:class:`ShardedOptimizerPort` runs in each of the N processes of a ``torch.distributed`` process
group. Every rank receives the scenario's full float64 arrays and builds the same DTensors
(``Shard(0)`` over a 1-D device mesh, FSDP2's layout; ``Replicate()`` for 0-d arrays) without
communicating (``distribute_tensor(..., src_data_rank=None)``): its shard is the DTensor's own
local tensor, so uneven splits and ranks holding no row are the DTensor's business, not the
harness's. Gradients are sharded the same way, set on ``.grad``, and ``step()`` is called.

What a rank answers (``params()``, ``state()``, ``stages()``) are its *local* arrays: its shard
of a ``Shard`` DTensor, the whole of a replicated or plain tensor; the harness assembles the full
arrays (:mod:`conformance.distributed.assemble`) without a collective, so reading a step's
results can never hang on a rank that misbehaves. Every ``step()`` runs under
:func:`count_collectives`; more collectives than the optimizer has param groups is reported as a
side effect (the contract: at most one collective per param group and step), as are gradients
mutated in place and a sentinel param group touched.

Where the optimizer keeps m, v and its step counter is found by ``state_discovery``, as for an
unsharded port: a probe optimizer on zero DTensors takes two steps and its state's entries are
read as full tensors (``full_tensor()``: every rank probes alike, so every rank finds the same
layout), under any names and containers (``state_map`` names them instead). A re-synced step
writes each rank's shard of the given full m and v into the entries found; ``state()`` reads
each rank's shard back. Where that probe finds no m and v but a flat buffer per rank (a 1-D
plain entry of the rank's shards back to back, ZeRO-1 style), the port is probed again with the
run's param groups, each rank's buffer of a group made whole array by array and each group
fitted on its own (``state_groups``); a re-synced step writes each rank's shards of a group's
arrays into its buffer back to back.

Parameters are dealt round-robin into ``groups`` param groups (default 2) plus the sentinel's,
so every check also exercises several groups. A contract scenario with several param groups
(``configure``: the contract's groups, each with its own options, arrays that never get a
gradient stepped with ``p.grad = None``) replaces that deal with the contract's groups. The rest
of the contract is driven as the unsharded adapter (``_torch``) drives it: an lr schedule sets
each contract group's ``lr`` to $\mathrm{lr}_k f_t$ before step $t$ (``LambdaLR``'s product; a
re-synced step from step $s$ starts at $f_{s+1}$), a tensor lr is a 0-d float64 tensor in each
group's options (a schedule ``fill_`` s it, as ``LRScheduler`` does), an array without gradient
at a step gets ``p.grad = None`` on every rank alike (the harness hands every rank the same
step), and SET-Adam layers of several arrays are one param group each with the port's layer
option (``layer``; ours: ``{"layer": "group"}``). A layer that is not a whole param group, or
no layer option, is refused with the reason. torch is imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..interface import PortState
from . import _torch_state as TS
from ._torch import MakeOptimizer, probe_groups, torch_dtype
from .state_discovery import LayoutCache, Leaf, StateLayout, View, gather, scatter, step_of
from .state_groups import groups_with_state
from .state_layout import path_text

#: operators of the collective namespaces that are bookkeeping, not communication
NOT_COLLECTIVES = frozenset({"wait_tensor", "_wrap_tensor_autograd"})


def count_collectives(torch: Any, fn: Callable[[], Any]) -> int:
    """Run ``fn``; the number of collectives it issued, counted by a dispatch mode that sees every
    operator of the ``c10d`` and ``_c10d_functional`` namespaces (``torch.distributed`` calls,
    functional collectives, DTensor redistributions; a functional collective's inner ``c10d``
    call runs below the mode and is not counted twice). About 1 ms per 100 operators, where the
    torch profiler costs tens of milliseconds per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    count = 0

    class _Count(TorchDispatchMode):  # type: ignore[no-untyped-call]
        def __torch_dispatch__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            nonlocal count
            ns = str(func.namespace)
            if ns in ("c10d", "_c10d_functional") and func._opname not in NOT_COLLECTIVES:
                count += 1
            return func(*args, **(kwargs or {}))

    with _Count():  # type: ignore[no-untyped-call]
        fn()
    return count


_MESHES: dict[tuple[str, int], Any] = {}


def mesh_for(device: str, world: int) -> Any:
    """The 1-D device mesh over the default process group (one per device type)."""
    key = (device, world)
    if key not in _MESHES:
        from torch.distributed.device_mesh import init_device_mesh

        _MESHES[key] = init_device_mesh(device, (world,))
    return _MESHES[key]


def _local_numpy(t: Any) -> np.ndarray:
    """A tensor's local values as float64 NumPy (the shard of a DTensor)."""
    from torch.distributed.tensor import DTensor

    x = t.to_local() if isinstance(t, DTensor) else t
    return np.array(x.detach().to("cpu").double().numpy(), dtype=np.float64, copy=True)


class ShardedOptimizerPort:
    """One rank's port of a torch optimizer on DTensors (see the module docstring)."""

    def __init__(
        self,
        name: str,
        make: MakeOptimizer,
        dtype: str = "float64",
        device: str = "cpu",
        *,
        groups: int = 2,
        sentinel: bool = True,
        record_stages: bool = True,
        state_map: Mapping[str, str] | None = None,
        betas: tuple[float, float] | None = None,
    ) -> None:
        import torch
        import torch.distributed as dist

        self.name = name
        self.dtype = dtype
        self.device = device
        self._torch = torch
        self._make = make
        self._tdt = torch_dtype(dtype)
        self._groups = max(1, groups)
        self._sentinel_on = sentinel
        self._record_stages = record_stages
        self._mesh = mesh_for(device, dist.get_world_size())
        self._params: list[Any] = []
        self._opt: Any = None
        self._sentinel: Any = None
        self._sentinel_before: Any = None
        self._effects: list[str] = []
        self._collectives = 0
        # per run's shapes, the paths of per-rank flat buffers its probe saw (``_whole``); the
        # probe's own shapes are not the run's (small arrays widened): kept by ``layout``
        self._rank_flat: dict[tuple[tuple[int, ...], ...], list[Any]] = {}
        self._probe_flat: list[Any] = []
        # discovery on the full tensors of a probe (``_snapshots``); betas: the configuration's,
        # so that the state is re-synced only in the reference's convention
        self._discovery = LayoutCache(self._snapshots, dtype, state_map, betas)
        self._state_map = state_map
        self._betas = None if betas is None else (float(betas[0]), float(betas[1]))
        # per number of arrays: the probe with the run's groups (a flat buffer per rank, group)
        self._by_group: dict[int, LayoutCache] = {}
        self._layout: StateLayout | None = None
        self.state_dtype = dtype
        # a contract's param groups (``configure``): per group its arrays and constructor options
        self._contract: Any = None
        self._options: list[dict[str, Any]] = []
        # the contract's lr schedule: per contract group its base lr, and the next step's index
        self._base_lr: list[float] = []
        self._t = 0

    # -- DTensors
    def _dtensor(self, a: np.ndarray, dtype: Any = None) -> Any:
        from torch.distributed.tensor import Replicate, Shard, distribute_tensor

        t = self._torch.tensor(np.asarray(a, dtype=np.float64), dtype=dtype or self._tdt)
        t = t.to(self.device)
        placement = Shard(0) if t.dim() > 0 else Replicate()
        return distribute_tensor(t, self._mesh, [placement], src_data_rank=None)

    def _arrays(self, n: int) -> list[list[int]]:
        """The run's param groups of ``n`` arrays: the contract's, or dealt round-robin."""
        if self._contract is not None:
            return [list(a) for a, _cfg in self._contract.groups]
        return _deal(n, self._groups)

    def _run_groups(self, params: list[Any]) -> list[dict[str, Any]]:
        """The run's param groups over ``params``, a contract group with its own options."""
        arrays = self._arrays(len(params))
        options = self._group_options() if self._contract is not None else [{} for _ in arrays]
        return [
            {"params": [params[i] for i in a], **kw} for a, kw in zip(arrays, options, strict=True)
        ]

    def _group_options(self) -> list[dict[str, Any]]:
        """Each contract group's constructor options, its lr a 0-d float64 tensor (the same
        value) where the contract asks for a tensor lr: made here, in the rank, per optimizer."""
        if self._contract is None or not self._contract.tensor_lr:
            return [dict(o) for o in self._options]
        torch = self._torch
        return [
            {**o, "lr": torch.tensor(float(o["lr"]), dtype=torch.float64, device=self.device)}
            for o in self._options
        ]

    def _build(self, params: list[Any]) -> Any:
        groups = self._run_groups(params)
        if self._sentinel_on:
            self._sentinel = self._dtensor(np.linspace(-1.0, 1.0, 3)).requires_grad_(True)
            self._sentinel_before = self._sentinel.to_local().detach().clone()
            groups.append({"params": [self._sentinel]})
        try:
            return self._make(groups)
        except (ValueError, TypeError, KeyError):
            if not self._sentinel_on:
                raise
            self._sentinel_on = False  # an optimizer that refuses a second group: no sentinel
            self._sentinel = None
            return self._make(groups[:-1])

    def _extras(self) -> list[Any]:
        return [self._sentinel] if self._sentinel is not None else []

    def _leaves(self, opt: Any, params: list[Any], full: bool) -> dict[Any, Any]:
        """The optimizer's state leaves (``_torch_state``): a DTensor entry as its full tensor
        (``full``: a collective every rank makes, the probe's) or as this rank's shard."""
        from torch.distributed.tensor import DTensor

        def value(x: Any) -> Any:
            if isinstance(x, DTensor):
                return x.full_tensor() if full else x.to_local()
            return x

        return TS.leaves(TS.slots(opt, params, self._extras() if opt is self._opt else ()), value)

    def _snapshots(
        self,
        dt: str,
        shapes: list[tuple[int, ...]],
        g1: list[np.ndarray],
        g2: list[np.ndarray],
        grouped: bool = False,
    ) -> list[dict[Any, Any]]:
        """The probe for ``state_discovery`` on DTensors: a fresh optimizer on zero parameters
        sharded like the real ones, its state's leaves (full tensors) before the first step and
        after each of two steps. Every rank probes alike, so every rank finds the same layout.
        One param group, or (``grouped``) the run's groups, a rank's flat buffer of a group's
        shards made whole array by array (``_whole``)."""
        tdt = torch_dtype(dt)
        params = [self._dtensor(np.zeros(s), tdt).requires_grad_(True) for s in shapes]
        arrays = self._arrays(len(params)) if grouped else [list(range(len(params)))]
        opt = self._make(self._run_groups(params) if grouped else [{"params": params}])
        # a contract's arrays without gradient have none in the probe either
        frozen = set(self._contract.frozen) if grouped and self._contract is not None else set()
        # per group, this rank's shard sizes: those of a per-rank flat buffer of the group
        local = [[params[i].to_local().numel() for i in a] for a in arrays]
        seen = self._probe_flat
        snaps = [_whole(self._leaves(opt, params, full=True))]
        for g in (g1, g2):
            with self._torch.no_grad():  # zero at each step: weight decay adds nothing to g
                for p in params:
                    p.zero_()
            for i, (p, x) in enumerate(zip(params, g, strict=True)):
                p.grad = None if i in frozen else self._dtensor(x, tdt)
            opt.step()
            snaps.append(_whole(self._leaves(opt, params, full=True), local, seen, grouped))
        return snaps

    def _group_snapshots(
        self, dt: str, shapes: list[tuple[int, ...]], g1: list[np.ndarray], g2: list[np.ndarray]
    ) -> list[dict[Any, Any]]:
        return self._snapshots(dt, shapes, g1, g2, grouped=True)

    def _refusal(self, layout: StateLayout, shapes: Sequence[Any], amsgrad: bool) -> str:
        """``layout.refusal``, naming a per-rank flat buffer where the one-group probe saw one
        and found no m and v: what is not judged and why, not only that nothing matched."""
        why = layout.refusal(amsgrad)
        seen = self._rank_flat.get(_key(shapes), [])
        if why and not layout.readable and seen:
            how = (
                "probed again with the run's param groups, each buffer made whole array by array"
                if not self._state_map
                else "read per group only where the probe finds the state, not named by a map"
            )
            why += (
                f"; {path_text(seen[0])} holds each rank's shards of the probe's arrays back to "
                f"back (a flat buffer per rank, ZeRO-1 style): {how}"
            )
        return why

    def layout(self, shapes: Sequence[tuple[int, ...]]) -> StateLayout:
        """Where this optimizer keeps its state, for parameters of these (full) shapes."""
        self._probe_flat = []
        layout = self._discovery.get(shapes)
        if self._probe_flat:  # probed just now, and a per-rank flat buffer seen
            self._rank_flat[_key(shapes)] = self._probe_flat
        if not layout.readable and self._rank_flat.get(_key(shapes)) and not self._state_map:
            # a flat buffer per rank and group: found again with the run's groups, each group
            # fitted on its own (``state_groups``), its buffer made whole array by array
            n = len(shapes)
            if n not in self._by_group:
                cache = LayoutCache(self._group_snapshots, self.dtype, None, self._betas)
                cache.set_groups(self._state_groups(n))
                self._by_group[n] = cache
            layout = self._by_group[n].get(shapes)
        self._layout = layout
        return layout

    def _state_groups(self, n: int) -> list[tuple[tuple[int, ...], tuple[float, float]]]:
        """Per run's param group with state, its arrays and betas (``state_groups``)."""
        if self._contract is not None:
            return groups_with_state(self._contract)
        return [(tuple(a), self._betas or (0.9, 0.999)) for a in _deal(n, self._groups)]

    def _write(self, found: dict[Any, Any], view: View, flat: np.ndarray) -> None:
        """Write a role's full values into a view: a DTensor entry gets this rank's shard."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        x = found[view.path].get()
        if not isinstance(x, DTensor) and view.sub is None and view.array is not None:
            if hasattr(x, "numel") and x.numel() != np.size(flat):  # a plain tensor of a shard
                p = self._params[view.array]
                mine = self._dtensor(np.reshape(flat, p.shape), x.dtype).to_local()
                if mine.numel() == x.numel():
                    x.copy_(mine.reshape(x.shape))
                    return
        if isinstance(x, DTensor) and view.sub is None:
            full = self._torch.tensor(np.reshape(flat, x.shape), dtype=x.dtype, device=x.device)
            mine = distribute_tensor(full, x.device_mesh, x.placements, src_data_rank=None)
            x.to_local().copy_(mine.to_local())
            return
        TS.write(found, view, flat)

    def _write_flat(
        self, found: dict[Any, Any], views: Sequence[View], values: Sequence[np.ndarray]
    ) -> None:
        """Write a group's flat buffer (``within`` views): this rank's shards of the group's
        arrays, back to back (a buffer of another size is a ``Mismatch``)."""
        done: set[Any] = set()
        for v in views:
            if (v.path, v.sub) in done or v.within is None:
                continue
            done.add((v.path, v.sub))
            mine = [
                _local_numpy(self._dtensor(np.reshape(values[j], self._params[j].shape))).ravel()
                if j >= 0 else np.zeros(-j)  # -j values of no array: zero, as never stepped
                for j in v.within
            ]
            TS.write(found, View(v.path, None, v.sub), np.concatenate(mine))

    def _write_number(self, found: dict[Any, Any], path: Any, value: float) -> None:
        from torch.distributed.tensor import DTensor

        x = found[path].get() if path in found else None
        if isinstance(x, DTensor):  # a replicated counter: every rank holds the whole of it
            x.to_local().fill_(float(value))
            return
        TS.write_number(found, path, value)

    # -- the rank's half of the Port interface
    def configure(
        self,
        contract: Any,
        options: Sequence[Mapping[str, Any]],
        layer: Mapping[str, Any] | None = None,
    ) -> None:
        """Take a contract: ``options[k]`` the constructor options of group ``k`` (built where
        the calling convention is known: ``rank_pool.PooledPort``; with ``layer``, the option
        making a group one SET-Adam layer, where the contract's layers hold several arrays),
        its lr schedule, tensor lr and arrays without gradient. What this adapter does not
        drive is refused with the reason."""
        self._contract, self._options, self._by_group = None, [], {}
        if len(options) != len(contract.groups):
            raise NotImplementedError("no constructor options for every param group")
        if contract.tensor_lr and any("lr" not in o for o in options):
            raise NotImplementedError("no lr option in every param group for a tensor lr")
        if contract.multi_array_layers():
            if layer is None:
                raise NotImplementedError("the port takes one SET-Adam layer per tensor")
            if sorted(contract.layers) != sorted(a for a, _ in contract.groups):
                raise NotImplementedError("a layer of several tensors is one param group here")
        extra = dict(layer or {})
        self._contract, self._options = contract, [{**o, **extra} for o in options]
        if (len(contract.groups) > 1 or contract.tensor_lr) and (why := probe_groups(
            self._make, self._zeros, self._ones, self._group_options(), _moved_full
        )):  # fmt: skip
            self._contract, self._options = None, []
            what = "a 0-d tensor lr" if contract.tensor_lr else "these param groups"
            raise NotImplementedError(f"the optimizer does not take {what} ({why})")

    def _zeros(self) -> Any:
        return self._dtensor(np.zeros(3)).requires_grad_(True)

    def _ones(self, p: Any) -> Any:
        return self._dtensor(np.ones(3))

    def _schedule_next(self) -> None:
        r"""Before a step: each contract group's lr at this step, $\mathrm{lr}_k f_t$ (the
        sentinel's group, after them, keeps its own). Every rank sets the same value."""
        f = None if self._contract is None else self._contract.lr_factors
        if f is None:
            return
        factor = f[min(self._t, len(f) - 1)]
        for g, base in zip(self._opt.param_groups, self._base_lr, strict=False):
            lr = base * factor
            if hasattr(g["lr"], "fill_"):
                g["lr"].fill_(lr)  # a tensor lr stays the same tensor (LRScheduler's way)
            else:
                g["lr"] = lr
        self._t += 1

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        self._params = [self._dtensor(p).requires_grad_(True) for p in params]
        shapes = [np.shape(p) for p in params]
        layout = self.layout(shapes)
        if layout.state_dtype:
            self.state_dtype = layout.state_dtype
        # an amsgrad state whose vmax was not found is refused too: never a stale maximum
        if state is not None and (why := self._refusal(layout, shapes, state.vmax is not None)):
            raise NotImplementedError(f"cannot continue from a given state: {why}")
        self._opt = self._build(self._params)
        # only under a schedule: a port's group need not hold an "lr" otherwise
        sched = self._contract is not None and self._contract.lr_factors is not None
        n = len(self._contract.groups) if sched else 0
        self._base_lr = [float(g["lr"]) for g in self._opt.param_groups[:n]]
        self._t = 0 if state is None else int(state.step)
        if state is None:
            return
        # the state appears at a first step, overwritten below; a gradient of ones, not zeros:
        # a port may skip a rank's count on an all-zero shard (a bug to find later, not here)
        for p, a in zip(self._params, params, strict=True):
            p.grad = self._dtensor(np.ones(np.shape(a)))
        self._opt.step()
        found = TS.slots(self._opt, self._params, self._extras())
        vmax = state.vmax if state.vmax is not None else [np.zeros(np.shape(p)) for p in params]
        try:
            for role, values in (("m", state.m), ("v", state.v), ("vmax", vmax)):
                views = getattr(layout, role)
                plain = [x for x in views if x.within is None]
                for view, flat in scatter(plain, values) if plain else ():
                    self._write(found, view, flat)
                self._write_flat(found, [x for x in views if x.within is not None], values)
            for c in layout.counters:
                self._write_number(found, c.path, c.scale * int(state.step) + c.offset)
        except KeyError as exc:  # a path that names the probe's objects only
            raise NotImplementedError(
                f"cannot continue from a given state: {exc} found on the probe is not in this "
                "instance of the port"
            ) from None
        with self._torch.no_grad():
            for p, a in zip(self._params, params, strict=True):
                p.to_local().copy_(self._dtensor(a).to_local())
                p.grad = None

    def step(self, grads: Sequence[np.ndarray]) -> None:
        torch = self._torch
        if self._record_stages:
            self._opt.record_stages = True
        copies = []
        for p, g in zip(self._params, grads, strict=True):
            # None: no gradient at this step (a contract's frozen array)
            p.grad = None if g is None else self._dtensor(np.reshape(g, p.shape))
            copies.append(None if g is None else p.grad.to_local().detach().clone())
        self._schedule_next()
        self._collectives = count_collectives(torch, self._opt.step)
        self._effects = []
        for i, (p, c) in enumerate(zip(self._params, copies, strict=True)):
            if c is None:
                continue
            local = None if p.grad is None else p.grad.to_local()
            if local is None or not bool(torch.equal(local, c) or _nan_equal(torch, local, c)):
                self._effects.append(
                    f"the gradient of parameter {i} was modified in place by step()"
                )
                break
        if self._sentinel is not None:
            now = self._sentinel.to_local().detach()
            if not _nan_equal(torch, now, self._sentinel_before):
                self._effects.append(
                    "a parameter of another param group (no gradient) was modified by step()"
                )
            if len(self._opt.state.get(self._sentinel, {})) > 0:
                self._effects.append("step() created state for a parameter without gradient")

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(_local_numpy(p) for p in self._params)

    def state(self) -> PortState | None:
        """This rank's pieces of m and v where discovery found them (a DTensor entry's shard, a
        plain entry whole), and the step count; None when the state is not readable."""
        layout = self._layout
        if layout is None or not layout.readable or self._opt is None:
            return None
        found = self._leaves(self._opt, self._params, full=False)
        try:
            m = gather(found, layout.m, self._piece_shapes(found, layout.m))
            v = gather(found, layout.v, self._piece_shapes(found, layout.v))
        except (KeyError, ValueError):  # not created yet, or pieces of an unexpected size
            return None
        return PortState(step_of(found, layout.counters), m, v)

    def _piece_shapes(self, found: dict[Any, Any], views: Sequence[View]) -> list[Any]:
        """Per array, the shape of this rank's piece of a role: the shard's where the entry
        holds the shard (its size), the full shape where it holds the whole array."""
        local = [tuple(p.to_local().shape) for p in self._params]
        full = [tuple(p.shape) for p in self._params]
        if len(views) == 1 and views[0].array is None:
            n = found[views[0].path].value.size
            return local if n == sum(math.prod(s) for s in local) else full
        out: list[Any] = list(full)
        for v in views:
            if v.array is not None:
                x = found[v.path].value
                size = (x[v.sub] if v.sub is not None else x).size
                # a group's flat buffer (``within``): this rank's, or the group's full arrays'
                idx = v.within if v.within is not None else (v.array,)
                # a within's j < 0: -j values of no array; a frozen array's slot has no view of
                # its own but its piece's size too (else the buffer reads as a mismatch)
                mine = size == sum(math.prod(local[j]) if j >= 0 else -j for j in idx)
                for j in idx:
                    if j >= 0:
                        out[j] = local[j] if mine else full[j]
        return out

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        last = getattr(self._opt, "last_stages", None) if self._record_stages else None
        if not last:
            return None
        # the record is in param_groups order; the harness's arrays are in reset() order
        flat = [q for g in self._opt.param_groups for q in g["params"]]
        order = {id(p): j for j, p in enumerate(flat)}
        pos = [order[id(p)] for p in self._params]
        return {str(k): tuple(_local_numpy(list(ts)[j]) for j in pos) for k, ts in last.items()}

    def side_effects(self) -> list[str]:
        effects = list(self._effects)
        groups = len(self._opt.param_groups)
        if self._collectives > groups:
            effects.append(
                f"step() issued {self._collectives} collectives; the contract is at most one "
                f"per param group ({groups})"
            )
        return effects

    def collectives(self) -> int:
        """Collectives the last ``step()`` issued on this rank."""
        return self._collectives


def _moved_full(p: Any) -> bool:
    """A probe parameter moved: its full tensor, so every rank answers the same."""
    return bool((p.full_tensor() != 0).any())


def _deal(n: int, groups: int) -> list[list[int]]:
    """The run's param groups of ``n`` arrays: dealt round-robin into ``groups`` (none empty)."""
    k = min(groups, n) or 1
    return [a for a in (list(range(i, n, k)) for i in range(k)) if a]


def _key(shapes: Sequence[Any]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(n) for n in s) for s in shapes)


def _nan_equal(torch: Any, a: Any, b: Any) -> bool:
    """Bitwise-equal values with NaN equal to NaN (same shape and dtype)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def _whole(
    leaves: dict[Any, Leaf],
    groups: Sequence[Sequence[int]] = (),
    seen: list[Any] | None = None,
    rebuild: bool = False,
) -> dict[Any, Leaf]:
    """A probe's leaves with plain tensors that hold a rank's piece (of a shard's size) made
    whole: every rank's values are exchanged (one ``all_gather_object``; every rank probes
    alike) and an entry whose pieces differ between ranks is their concatenation along
    dimension 0 in rank order (``Shard(0)``'s layout); entries equal on every rank (a counter, a
    replicated or full tensor) are kept as they are.

    ``groups``: per param group of the probe, this rank's shard sizes of its arrays in order. A
    1-D piece of a group's summed size on every rank (two arrays or more) is a flat buffer of
    the rank's shards back to back (ZeRO-1 style): its path is added to ``seen``, and
    (``rebuild``) it is made whole array by array (array $j$'s pieces in rank order, then
    array $j+1$'s), the group's flat buffer of full arrays ``state_groups`` reads; in rank order
    alone it would match no view."""
    import torch.distributed as dist

    world = dist.get_world_size()
    if world == 1:
        return leaves
    every: list[Any] = [None] * world
    values = {path: leaf.value for path, leaf in leaves.items()}
    dist.all_gather_object(every, ([list(g) for g in groups], values))
    sizes = [e[0] for e in every]  # per rank, per group, per array
    out = dict(leaves)
    for path, leaf in leaves.items():
        pieces = [e[1].get(path) for e in every]
        if any(p is None or p.ndim == 0 for p in pieces):
            continue
        if all(p.shape == pieces[0].shape and np.array_equal(p, pieces[0]) for p in pieces):
            continue
        k = _flat_group(pieces, sizes)
        if k is not None and seen is not None and path not in seen:
            seen.append(path)
        if k is not None and rebuild:
            value = np.concatenate(_by_array(pieces, [s[k] for s in sizes]))
            out[path] = Leaf(path, value, leaf.dtype, value.size == 1)
        elif all(p.shape[1:] == pieces[0].shape[1:] for p in pieces):
            value = np.concatenate(pieces, axis=0)
            out[path] = Leaf(path, value, leaf.dtype, value.size == 1)
    return out


def _flat_group(pieces: Sequence[np.ndarray], sizes: Sequence[Any]) -> int | None:
    """The probe group (of two arrays or more) whose shards, summed, are every rank's 1-D
    piece's size: the piece is that rank's flat buffer of the group (None: no group's)."""
    if not sizes or any(p.ndim != 1 for p in pieces):
        return None
    for k in range(len(sizes[0])):
        if len(sizes[0][k]) > 1 and all(
            p.size == sum(s[k]) for p, s in zip(pieces, sizes, strict=True)
        ):
            return k
    return None


def _by_array(pieces: Sequence[np.ndarray], sizes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Ranks' flat buffers of a group's shards (``sizes``: per rank, its shards' sizes) as the
    arrays' pieces in array order, each array's in rank order."""
    starts = [np.concatenate([[0], np.cumsum(s)]).astype(int) for s in sizes]
    return [
        p[st[j] : st[j + 1]]
        for j in range(len(sizes[0]))
        for p, st in zip(pieces, starts, strict=True)
    ]
