"""Generic torch.optim.Optimizer port (torch imported lazily, only here and in torch adapters).

``TorchOptimizerPort`` drives any optimizer built as ``make(param_groups)``: parameters are leaf
tensors of the port's dtype/device, gradients are set on ``.grad`` and ``.step()`` is called.
Where the optimizer keeps m, v, vmax and its step counter is not assumed: a probe optimizer takes
two steps from zero state and ``state_discovery`` finds them by their values, under any keys, in
attributes, closures or nested containers (``state_map`` names them instead); for a contract
with several param groups, where that one-group probe finds the state anywhere but per parameter
(lists or a flat buffer per group, a count per group), the probe takes the contract's groups and
each group is found on its own (``state_groups``); that probe adds the sentinel's group, and a
flat buffer over every group's arrays and the sentinel's is read in the order fitted on it
(``state_spans``), as is, with one group, a flat entry over all arrays that the one-group probe
(no sentinel) finds (``_over_all``). State keyed in ``optimizer.state`` by a tensor that is not
a parameter is walked too (``_torch_state``). A re-synced step builds the optimizer, lets
it create its state with one zero-gradient step, then writes the given state into the entries
found, in the representation the optimizer itself uses (a tensor in place, on its device and in
its dtype, or a Python number through its container).

Side effects are watched: every gradient is compared after ``step()`` with a copy taken before,
and a sentinel parameter in a second param group (no gradient) must stay untouched and stateless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..interface import PortState
from . import _torch_differentiable as TD
from . import _torch_state as TS
from ._checkpoint import torch_reload
from .state_discovery import LayoutCache, StateLayout, gather, path_text, scatter, step_of
from .state_groups import groups_with_state, per_parameter
from .state_views import Mismatch

#: the size of the sentinel parameter (its own param group, never a gradient)
SENTINEL = 3


def torch_dtype(name: str) -> Any:
    import torch

    return {
        "float64": torch.float64,
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
    }[name]


def dtype_name(tdt: Any) -> str:
    return str(tdt).replace("torch.", "")


def _same(torch: Any, a: Any, b: Any) -> bool:
    """Bitwise-equal values (NaN equal to NaN), same shape."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def to_numpy(t: Any) -> np.ndarray:
    return np.asarray(t.detach().to("cpu", copy=True).double().numpy(), dtype=np.float64)


#: The harness drives small tensors: one intra-op thread avoids OpenMP spin-waits that make tiny
#: fused CPU steps 10-50x slower on a loaded 2-core machine (set False to keep torch's setting).
LIMIT_THREADS = True
_limited = False


def _limit_threads() -> None:
    global _limited
    if LIMIT_THREADS and not _limited:
        import torch

        torch.set_num_threads(1)
        _limited = True


MakeOptimizer = Callable[[list[dict[str, Any]]], Any]


def probe_groups(
    make: MakeOptimizer,
    zeros: Callable[[], Any],
    ones: Callable[[Any], Any],
    options: Sequence[dict[str, Any]],
    moved: Callable[[Any], bool],
) -> str | None:
    """Why an optimizer does not take these param groups' options (None: it does): one step
    over a parameter per group (``zeros()``, gradient ``ones(p)``), each group with its options,
    must run and move some parameter (``moved``; sharded: judged on the full tensor, so every
    rank answers the same). Only a refusal or no effect at all is a skip; a step that moves
    them wrongly (one group only, a wrong lr) is judged by the scenario, and fails."""
    ps = [zeros() for _ in options]
    try:
        opt = make([{"params": [p], **kw} for p, kw in zip(ps, options, strict=True)])
        for p in ps:
            p.grad = ones(p)
        opt.step()
    except Exception as exc:  # the optimizer refuses it: the reason is its message
        return f"{type(exc).__name__}: {exc}".strip()
    if not any(moved(p) for p in ps):
        return "a probe step left every parameter unchanged"
    return None


class TorchOptimizerPort:
    """A torch optimizer behind the harness's Port interface."""

    def __init__(
        self,
        name: str,
        make: MakeOptimizer,
        dtype: str = "float64",
        device: str = "cpu",
        *,
        sentinel: bool = True,
        record_stages: bool = False,
        state_map: dict[str, str] | None = None,
        betas: tuple[float, float] | None = None,
        group_kwargs: Callable[[Any], dict[str, Any]] | None = None,
        group_layer: dict[str, Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        import torch

        _limit_threads()
        self.name = name
        self.dtype = dtype
        self.device = device
        self._torch = torch
        self._make = make
        self._tdt = torch_dtype(dtype)
        self._sentinel_on = sentinel
        self._record_stages = record_stages
        self._params: list[Any] = []
        self._opt: Any = None
        self._sentinel: Any = None
        self._sentinel_before: Any = None
        self._effects: list[str] = []
        # betas (the configuration's): the state is re-synced only in the reference's convention
        self._discovery = LayoutCache(self._snapshots, dtype, state_map, betas)
        # a contract with several groups: a port whose state is not kept per parameter (lists
        # or a flat buffer per group, a count per group) is probed with the run's own groups
        self._by_group = LayoutCache(self._group_snapshots, dtype, state_map, betas)
        # one flat buffer over every parameter, found by the one-group probe (which has no
        # sentinel): probed again with the sentinel's group, the buffer's order fitted
        self._spanned = LayoutCache(self._group_snapshots, dtype, state_map, betas)
        self._spanned_groups: Any = None
        self._betas = betas
        self._grouped = False
        self._state_map = state_map
        self._layout: StateLayout | None = None  # the layout of the current parameters
        self.state_dtype = dtype
        # the contract (conformance.contract): param groups' options from a config, lr schedule
        self._group_kwargs = group_kwargs
        self._group_layer = group_layer  # the option making a param group one SET-Adam layer
        self._contract: Any = None
        self._sched: Any = None
        self._layouts: tuple[str, ...] | None = None
        self._compile = False
        self._step_fn: Any = None
        # what ``make`` passes the constructor (reported; None: not known here)
        self._kwargs = None if kwargs is None else dict(kwargs)

    # -- helpers
    def _tensor(self, a: np.ndarray, dtype: Any = None) -> Any:
        return self._torch.tensor(
            np.asarray(a, dtype=np.float64), dtype=dtype or self._tdt, device=self.device
        )

    def _groups(self, params: list[Any]) -> list[dict[str, Any]]:
        """One param group, or the contract's groups with their options."""
        c = self._contract
        layer = self._group_layer if c is not None and c.multi_array_layers() else None
        plain = len(c.groups) == 1 and layer is None and not c.tensor_lr if c else True
        if c is None or self._group_kwargs is None or plain:
            return [{"params": params}]
        return [
            {"params": [params[i] for i in arrays], **self._group_kwargs(cfg), **(layer or {}),
             **self._tensor_lr(cfg)}
            for arrays, cfg in c.groups
        ]  # fmt: skip

    def construction(self, n: int) -> dict[str, Any]:
        """The keyword arguments the optimizer is built with, for a reproducer: ``kwargs`` (the
        constructor's) and ``groups``, per param group its arrays (of ``n``) and options (a
        tensor lr as its float); the sentinel's group is the harness's, not listed."""
        groups = [
            ([int(i) for i in g["params"]],
             {k: float(x) if hasattr(x, "item") else x for k, x in g.items() if k != "params"})
            for g in self._groups(list(range(n)))
        ]  # fmt: skip
        return {"kwargs": self._kwargs, "groups": groups}  # kwargs None: not known here

    def _tensor_lr(self, cfg: Any) -> dict[str, Any]:
        """``{"lr": 0-d float64 tensor}`` for a contract with a tensor lr (the same value)."""
        if self._contract is None or not self._contract.tensor_lr:
            return {}
        return {"lr": self._torch.tensor(cfg.lr, dtype=self._torch.float64, device=self.device)}

    def _probe(self, contract: Any) -> str | None:
        """Why the optimizer does not take the contract's groups or tensor lr (None: it does):
        :func:`probe_groups` over a 3-element parameter per group, each with its options."""
        torch = self._torch
        assert self._group_kwargs is not None
        layer = self._group_layer if contract.multi_array_layers() else None
        options = [{**self._group_kwargs(cfg), **(layer or {}), **self._tensor_lr(cfg)}
                   for _arrays, cfg in contract.groups]  # fmt: skip

        def zeros() -> Any:
            return torch.zeros(3, dtype=self._tdt, device=self.device).requires_grad_(True)

        return probe_groups(
            self._make, zeros, torch.ones_like, options, lambda p: bool((p != 0).any())
        )

    def _schedule(self, step: int | None) -> None:
        """The contract's lr: a real ``LambdaLR`` from step 0 (free-running), or ``group["lr"]``
        set for step ``step + 1`` (re-synced)."""
        f = None if self._contract is None else self._contract.lr_factors
        self._sched = None
        if f is None:
            return
        groups = self._opt.param_groups[: len(self._contract.groups)]  # not the sentinel's
        if step is not None:
            for g in groups:
                g["lr"] = g["lr"] * f[step]
            return
        from torch.optim.lr_scheduler import LambdaLR

        lam = [lambda k: f[min(k, len(f) - 1)]] * len(self._opt.param_groups)
        self._sched = LambdaLR(self._opt, lam)

    def lay_out(self, layouts: Sequence[str]) -> None:
        """Parameters in these memory layouts from the next ``reset`` on (``interface``)."""
        self._layouts = tuple(layouts)

    def _leaf(self, a: np.ndarray, i: int) -> Any:
        """Parameter ``i`` as a leaf tensor in its requested layout (``interface.LAYOUTS``)."""
        lay = self._layouts[i] if self._layouts is not None else "contiguous"
        if lay == "transposed":  # the transpose of a contiguous tensor: strides (1, rows)
            return self._tensor(np.ascontiguousarray(np.asarray(a).T)).t().detach()
        if lay == "channels_last":
            return self._tensor(a).contiguous(memory_format=self._torch.channels_last)
        return self._tensor(a)

    def compile_step(self) -> None:
        """Step through ``torch.compile(opt.step)`` of every optimizer built from now on."""
        self._compile = True

    def _build(self, params: list[Any]) -> Any:
        opt = self._build_optimizer(params)
        # compiled: the step users compile; eager: opt.step as it is now (an LRScheduler wraps it)
        self._step_fn = self._torch.compile(opt.step) if self._compile else None
        return opt

    def _build_optimizer(self, params: list[Any]) -> Any:
        groups: list[dict[str, Any]] = self._groups(params)
        if self._sentinel_on:
            self._sentinel = self._tensor(np.linspace(-1.0, 1.0, SENTINEL)).requires_grad_(True)
            self._sentinel_before = self._sentinel.detach().clone()
            groups.append({"params": [self._sentinel]})
        try:
            return self._make(groups)
        except (ValueError, TypeError, KeyError):
            if not self._sentinel_on:
                raise
            self._sentinel_on = False  # optimizer refuses a second group: drop the sentinel
            self._sentinel = None
            return self._make(groups[:-1])

    def _snapshots(
        self,
        dt: str,
        shapes: list[tuple[int, ...]],
        g1: list[np.ndarray],
        g2: list[np.ndarray],
        grouped: bool = False,
    ) -> list[dict[Any, Any]]:
        """The probe for ``state_discovery``: a fresh optimizer on zero parameters (set back to
        zero before the second step), its state's leaves before the first step and after each
        of two steps. One param group, or (``grouped``) the contract's groups with their
        options, the arrays that never get a gradient without one."""
        torch = self._torch
        tdt = torch_dtype(dt)
        params = [
            torch.zeros(s, dtype=tdt, device=self.device).requires_grad_(True) for s in shapes
        ]
        # grouped: the sentinel's group too (a buffer over every group holds its parameter)
        extra = [{"params": [torch.zeros(SENTINEL, dtype=tdt, device=self.device)
                             .requires_grad_(True)]}] if grouped and self._sentinel_on else []  # fmt: skip
        make = (lambda ps: self._make(self._groups(ps) + extra)) if grouped else (
            lambda ps: self._make([{"params": ps}]))  # fmt: skip
        frozen = set(self._contract.frozen) if grouped and self._contract is not None else set()
        opt, params = TD.build(make, params)
        mine = [g["params"][0] for g in extra]
        snaps = [TS.leaves(TS.slots(opt, params, mine))]
        for g in (g1, g2):
            with torch.no_grad():  # zero at each step: weight decay adds nothing to g
                for p in params:
                    p.zero_()
            for i, (p, x) in enumerate(zip(params, g, strict=True)):
                p.grad = None if i in frozen else self._tensor(x, tdt)
            opt.step()
            snaps.append(TS.leaves(TS.slots(opt, params, mine)))
        return snaps

    def _group_snapshots(
        self, dt: str, shapes: list[tuple[int, ...]], g1: list[np.ndarray], g2: list[np.ndarray]
    ) -> list[dict[Any, Any]]:
        return self._snapshots(dt, shapes, g1, g2, grouped=True)

    def layout(self, shapes: Sequence[tuple[int, ...]]) -> StateLayout:
        """Where this optimizer keeps its state, for parameters of these shapes (cached): found
        by a one-group probe, or, for a contract with several groups where that probe finds the
        state anywhere but per parameter, by a probe with the contract's groups, each group
        fitted on its own (``state_groups``)."""
        layout = self._discovery.get(shapes)
        if self._grouped and not self._state_map and not per_parameter(layout):
            layout = self._by_group.get(shapes)
        elif self._over_all(layout):
            found = self._spanning(len(shapes)).get(shapes)
            layout = found if found.writable else layout  # else: the one-group probe's, as before
        self._layout = layout
        return layout

    def _over_all(self, layout: StateLayout) -> bool:
        """Whether the one-group probe found one flat entry over all arrays where the run's
        optimizer also holds the sentinel (its buffer may hold the sentinel's values too)."""
        views = [*layout.m, *layout.v]
        return (not self._grouped and not self._state_map and self._sentinel_on
                and any(v.array is None for v in views))  # fmt: skip

    def _spanning(self, n: int) -> LayoutCache:
        """The cache probing with the run's one group plus the sentinel's (``state_spans``)."""
        c = self._contract
        b = (0.9, 0.999) if self._betas is None else self._betas  # unchecked when None
        groups = groups_with_state(c) if c is not None else [(tuple(range(n)), b)]
        if groups != self._spanned_groups:
            self._spanned.set_groups(groups, (SENTINEL,))
            self._spanned_groups = groups
        return self._spanned

    def state_layout(self) -> str:
        """One line for the report: where the state was found, or why it could not be."""
        layout = self._layout or self.layout([tuple(p.shape) for p in self._params])
        return layout.describe()

    def _counter_paths(self, path: Any, layout: StateLayout) -> list[Any]:
        """Where a counter found on the one-group probe lives on this port: a counter of the
        probe's param group (``group["step"]``, as fused multi-tensor kernels keep one t per
        launch) is every contract group's, each at the re-synced step count (writing group 0's
        alone left the others at the count of the zero-gradient step: a false alarm). A layout
        found per group has each group's counters already."""
        n = 1 if self._contract is None else len(self._contract.groups)
        if n == 1 or layout.groups or not path or path[0] != ("group", 0):
            return [path]
        return [(("group", k), *path[1:]) for k in range(n)]

    def _extras(self) -> list[Any]:
        return [self._sentinel] if self._sentinel is not None else []

    # -- Port interface
    def configure(self, contract: Any) -> None:
        """Take a contract scenario's groups, lr schedule and absent gradients."""
        self._grouped = False
        if (len(contract.groups) > 1 or contract.tensor_lr) and self._group_kwargs is None:
            raise NotImplementedError("the adapter has no param-group options for a config")
        if contract.multi_array_layers():
            if self._group_layer is None:
                raise NotImplementedError("the port takes one SET-Adam layer per tensor")
            if sorted(contract.layers) != sorted(a for a, _ in contract.groups):
                raise NotImplementedError("a layer of several tensors is one param group here")
        self._contract = contract
        if (len(contract.groups) > 1 or contract.tensor_lr) and (why := self._probe(contract)):
            self._contract = None
            what = "a 0-d tensor lr" if contract.tensor_lr else "these param groups"
            raise NotImplementedError(f"the optimizer does not take {what} ({why})")
        self._grouped = len(contract.groups) > 1
        if self._grouped:
            extras = (SENTINEL,) if self._sentinel_on else ()
            self._by_group.set_groups(groups_with_state(contract), extras)

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        torch = self._torch
        self._params = [self._leaf(p, i).requires_grad_(True) for i, p in enumerate(params)]
        layout = self.layout([np.shape(p) for p in params])
        # an amsgrad state whose vmax was not found is refused too: never a stale maximum
        if state is not None and (why := layout.refusal(state.vmax is not None)):
            raise NotImplementedError(f"cannot continue from a given state: {why}")
        self._opt, self._params = TD.build(self._build, self._params)  # differentiable=True
        if state is None:
            self._schedule(None)
            return
        for p in self._params:  # the optimizer creates its state on its first step
            p.grad = torch.zeros_like(p)
        self._opt.step()
        found = TS.slots(self._opt, self._params, self._extras())
        vmax = state.vmax if state.vmax is not None else [np.zeros(np.shape(p)) for p in params]
        try:
            for role, values in (("m", state.m), ("v", state.v), ("vmax", vmax)):
                for view, flat in scatter(getattr(layout, role), values):
                    TS.write(found, view, flat)
            for c in layout.counters:
                for path in self._counter_paths(c.path, layout):
                    TS.write_number(found, path, c.scale * int(state.step) + c.offset)
        except Mismatch as exc:  # an entry of another size than on the probe
            raise NotImplementedError(
                f"cannot continue from a given state: {exc.args[0]}"
            ) from None
        except KeyError as exc:  # a path that names the probe's objects only (an id as a key)
            where = path_text(exc.args[0]) if isinstance(exc.args[0], tuple) else str(exc)
            raise NotImplementedError(
                f"cannot continue from a given state: {where} found on the probe is not in this "
                "instance of the port"
            ) from None
        with torch.no_grad():
            for p, a in zip(self._params, params, strict=True):
                p.copy_(self._tensor(a).reshape(p.shape))
                p.grad = None
        self._schedule(int(state.step))
        first = found.get(layout.m[0].path)
        if first is not None and hasattr(first.get(), "dtype"):
            self.state_dtype = dtype_name(first.get().dtype)

    def step(self, grads: Sequence[np.ndarray]) -> None:
        torch = self._torch
        if self._record_stages:
            self._opt.record_stages = True
        copies = []
        for p, g in zip(self._params, grads, strict=True):
            p.grad = None if g is None else self._tensor(g).reshape(p.shape)  # None: no gradient
            if p.grad is not None and not p.is_contiguous():  # in its parameter's layout
                p.grad = torch.empty_like(p).copy_(p.grad)
            copies.append(None if g is None else p.grad.detach().clone())
        (self._step_fn or self._opt.step)()
        if self._sched is not None:
            self._sched.step()
        self._effects = []
        for i, (p, c) in enumerate(zip(self._params, copies, strict=True)):
            if c is None:
                continue
            if p.grad is None or not _same(torch, p.grad, c):
                self._effects.append(
                    f"the gradient of parameter {i} was modified in place by step()"
                )
                break
        if self._sentinel is not None:
            if not _same(torch, self._sentinel.detach(), self._sentinel_before):
                self._effects.append(
                    "a parameter of another param group (no gradient) was modified by step()"
                )
            if len(self._opt.state.get(self._sentinel, {})) > 0:
                self._effects.append("step() created state for a parameter without gradient")

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(to_numpy(p) for p in self._params)

    def state(self) -> PortState | None:
        layout = self._layout
        if layout is None or not layout.readable or self._opt is None:
            return None
        found = TS.leaves(TS.slots(self._opt, self._params, self._extras()))
        shapes = [tuple(p.shape) for p in self._params]
        try:
            m = gather(found, layout.m, shapes)
            v = gather(found, layout.v, shapes)
        except KeyError:  # not created yet (no step taken), or of another size than on the probe
            return None
        return PortState(step_of(found, layout.counters), m, v)

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        last = getattr(self._opt, "last_stages", None) if self._record_stages else None
        if not last:
            return None
        n = len(self._params)
        groups = self._groups(list(range(n)))  # param_groups order: the contract's groups
        order = [i for g in groups for i in g["params"]]
        out: dict[str, tuple[np.ndarray, ...]] = {}
        for k, tensors in last.items():
            vals = list(tensors)[:n]  # the sentinel's group is the last: its entries after these
            by_array = dict(zip(order, vals, strict=False))
            out[k] = tuple(to_numpy(by_array[i]) for i in range(n) if i in by_array)
        return out

    def side_effects(self) -> list[str]:
        return list(self._effects)

    def resume(self) -> None:
        """Checkpoint round trip (``_checkpoint.torch_reload``) into a fresh optimizer over fresh
        leaves holding the current values; the harness continues with those."""
        fresh = [p.detach().clone().requires_grad_(True) for p in self._params]
        opt = self._build(fresh)
        torch_reload(self._opt, opt)
        self._params, self._opt = fresh, opt
