"""One rank's side of a sharded torch port: a torch.optim-style optimizer on DTensor parameters.

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

Parameters are dealt round-robin into ``groups`` param groups (default 2) plus the sentinel's,
so every check also exercises several groups. torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..interface import PortState
from ._torch import MakeOptimizer, dtype_name, torch_dtype

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
        self._probe: dict[str, Any] | None = None
        self.state_dtype = dtype

    # -- DTensors
    def _dtensor(self, a: np.ndarray, dtype: Any = None) -> Any:
        from torch.distributed.tensor import Replicate, Shard, distribute_tensor

        t = self._torch.tensor(np.asarray(a, dtype=np.float64), dtype=dtype or self._tdt)
        t = t.to(self.device)
        placement = Shard(0) if t.dim() > 0 else Replicate()
        return distribute_tensor(t, self._mesh, [placement], src_data_rank=None)

    def _build(self, params: list[Any]) -> Any:
        k = min(self._groups, len(params)) or 1
        groups: list[dict[str, Any]] = [{"params": params[i::k]} for i in range(k)]
        groups = [g for g in groups if g["params"]]
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

    def _probe_state(self) -> dict[str, Any]:
        """The optimizer's state layout after one step on a parameter of one row per rank."""
        if self._probe is None:
            world = int(self._mesh.size())
            p = self._dtensor(np.full(world, 0.5)).requires_grad_(True)
            opt = self._make([{"params": [p]}])
            p.grad = self._dtensor(np.full(world, 0.25))
            opt.step()
            self._probe = dict(opt.state[p])
            ea = self._probe.get("exp_avg")
            if ea is not None and hasattr(ea, "dtype"):
                self.state_dtype = dtype_name(ea.dtype)
        return self._probe

    # -- the rank's half of the Port interface
    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        torch = self._torch
        self._params = [self._dtensor(p).requires_grad_(True) for p in params]
        if state is not None:
            probe = self._probe_state()
            if not {"exp_avg", "exp_avg_sq", "step"} <= set(probe):
                raise NotImplementedError(
                    f"unknown state layout {sorted(probe)}: cannot continue from a given state"
                )
        self._opt = self._build(self._params)
        if state is None:
            return
        probe = self._probe_state()
        step0 = probe["step"]
        sdt = probe["exp_avg"].dtype
        for i, p in enumerate(self._params):
            st: dict[str, Any] = {}
            if isinstance(step0, torch.Tensor):
                st["step"] = torch.full_like(step0, float(state.step))
            else:
                st["step"] = type(step0)(state.step)
            st["exp_avg"] = self._dtensor(np.reshape(state.m[i], p.shape), sdt)
            st["exp_avg_sq"] = self._dtensor(np.reshape(state.v[i], p.shape), sdt)
            self._opt.state[p] = st

    def step(self, grads: Sequence[np.ndarray]) -> None:
        torch = self._torch
        if self._record_stages:
            self._opt.record_stages = True
        copies = []
        for p, g in zip(self._params, grads, strict=True):
            p.grad = self._dtensor(np.reshape(g, p.shape))
            copies.append(p.grad.to_local().detach().clone())
        self._collectives = count_collectives(torch, self._opt.step)
        self._effects = []
        for i, (p, c) in enumerate(zip(self._params, copies, strict=True)):
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
        sts = [self._opt.state.get(p, {}) for p in self._params]
        if not sts or any("exp_avg" not in s or "exp_avg_sq" not in s for s in sts):
            return None
        raw = sts[0].get("step", 0)
        return PortState(
            int(float(raw.item() if hasattr(raw, "item") else raw)),
            tuple(_local_numpy(s["exp_avg"]) for s in sts),
            tuple(_local_numpy(s["exp_avg_sq"]) for s in sts),
        )

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


def _nan_equal(torch: Any, a: Any, b: Any) -> bool:
    """Bitwise-equal values with NaN equal to NaN (same shape and dtype)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
