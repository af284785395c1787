"""Generic optax GradientTransformation port (jax/optax imported lazily, only here).

Parameters are a list of jax arrays (one pytree leaf per array) of the port's dtype; each step runs
``updates, state = tx.update(grads, state, params); params = optax.apply_updates(params, updates)``
under ``jax.jit`` (compiled once per port, i.e. per scenario), as users run it. Which leaves of
the state pytree are m, v, vmax and the step counter is not assumed (optax's ``count``/``mu``/
``nu`` are one naming among many): ``state_discovery`` finds them from their values after two
probe updates, whatever the field names and nesting (NamedTuples, dicts, ``optax.chain`` tuples,
``inject_hyperparams`` wrappers); a re-synced step writes the given state into those leaves of
the transformation's initial state. float64 needs ``jax_enable_x64``, which this module turns on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..interface import PortState
from ._checkpoint import pytree_reload
from .state_discovery import LayoutCache, Leaf, Path, StateLayout, gather, scatter, step_of

JAX_DTYPES = ("float64", "float32", "bfloat16", "float16")
_x64 = False


def setup_jax() -> Any:
    global _x64
    import jax

    if not _x64:
        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
        _x64 = True
    return jax


def jnp_dtype(name: str) -> Any:
    import jax.numpy as jnp

    return {
        "float64": jnp.float64,
        "float32": jnp.float32,
        "bfloat16": jnp.bfloat16,
        "float16": jnp.float16,
    }[name]


def _to_numpy(a: Any) -> np.ndarray:
    return np.asarray(np.asarray(a).astype(np.float64), dtype=np.float64)


def _part(key: Any) -> tuple[str, Any]:
    """A jax key-path entry as a ``state_discovery`` path part."""
    for attr, kind in (("idx", "idx"), ("key", "key"), ("name", "attr")):
        if hasattr(key, attr):
            return (kind, getattr(key, attr))
    return ("key", str(key))


def _flatten(state: Any) -> tuple[list[tuple[Path, Any]], Any]:
    import jax

    pairs, treedef = jax.tree_util.tree_flatten_with_path(state)
    return [(tuple(_part(k) for k in kp), leaf) for kp, leaf in pairs], treedef


def _leaves(state: Any) -> dict[Path, Leaf]:
    out = {}
    for path, leaf in _flatten(state)[0]:
        value = np.array(np.asarray(leaf).astype(np.float64), dtype=np.float64, copy=True)
        if np.issubdtype(np.asarray(leaf).dtype, np.bool_):
            continue
        dtype = str(getattr(leaf, "dtype", type(leaf).__name__))
        out[path] = Leaf(path, value, dtype, value.size == 1 and value.ndim <= 1)
    return out


class OptaxPort:
    """An optax GradientTransformation behind the harness's Port interface."""

    def __init__(
        self,
        name: str,
        make_tx: Callable[[], Any],
        dtype: str = "float32",
        device: str = "cpu",
        *,
        jit: bool = True,
        state_map: dict[str, str] | None = None,
        betas: tuple[float, float] | None = None,
        make_for: Callable[[Any, Any], Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        group_kwargs: Callable[[Any], dict[str, Any]] | None = None,
    ) -> None:
        jax = setup_jax()
        import optax

        self.name = name
        self.dtype = dtype
        self.device = device
        self._jax = jax
        self._dt = jnp_dtype(dtype)
        self._np_dt = np.dtype(self._dt)
        self._tx = make_tx()
        self._params: list[Any] = []
        self._state: Any = None
        self._init_state: Any = None
        # betas (the configuration's): the state is re-synced only in the reference's convention
        self._discovery = LayoutCache(self._snapshots, dtype, state_map, betas, root="state")
        # the contract (conformance.contract): a transformation for (config, learning_rate)
        self._make_for = make_for
        # what ``make_tx`` passes the target (reported; None: not known here)
        self._kwargs = None if kwargs is None else dict(kwargs)
        self._group_kwargs = group_kwargs  # what ``make_for`` passes it for a group's config
        self._built: list[tuple[list[int], dict[str, Any]]] | None = None

        def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
            updates, new_state = self._tx.update(grads, state, params)
            return optax.apply_updates(params, updates), new_state

        self._update = jax.jit(update) if jit else update

    def construction(self, n: int) -> dict[str, Any]:
        """The keyword arguments the transformation is built with, for a reproducer: ``kwargs``
        (a plain case's) and, after ``configure``, ``groups``: per contract group its arrays and
        the keyword arguments of its transformation (``learning_rate`` the constant one; the
        schedule and the ``multi_transform`` labels follow from the contract, as below)."""
        return {"kwargs": self._kwargs, "groups": self._built}  # kwargs None: not known here

    def configure(self, contract: Any) -> None:
        """Param groups as ``optax.multi_transform`` (one label per group, ``set_to_zero`` for
        the frozen parameters), the lr schedule as ``learning_rate`` = a schedule of the count.

        optax has no absent gradient: a zero gradient still decays m and v and advances the
        count, and a leaf is masked (``optax.masked`` / ``MaskedNode``) for the whole run only,
        so a parameter without gradient at some steps is not expressible."""
        import jax.numpy as jnp
        import optax

        if self._make_for is None:
            raise NotImplementedError("the adapter has no transformation for a config")
        if contract.tensor_lr:
            raise NotImplementedError(
                "a 0-d tensor lr is torch's group['lr']; optax takes the lr as a schedule here"
            )
        if contract.multi_array_layers():
            raise NotImplementedError("the port takes one SET-Adam layer per leaf")
        if contract.partial:
            raise NotImplementedError(
                "optax has no absent gradient (a zero gradient decays m, v and advances the "
                "count; a leaf is masked for the whole run only)"
            )
        f = None if contract.lr_factors is None else jnp.asarray(contract.lr_factors)

        def lr(cfg: Any) -> Any:
            if f is None:
                return cfg.lr
            return lambda count: cfg.lr * f[jnp.minimum(count, f.shape[0] - 1)]

        if self._group_kwargs is not None:
            self._built = [(list(a), self._group_kwargs(c)) for a, c in contract.groups]
        frozen = set(contract.frozen)
        live = [(k, c) for k, (arrays, c) in enumerate(contract.groups) if set(arrays) - frozen]
        if len(contract.groups) == 1 and not frozen:
            self._tx = self._make_for(contract.groups[0][1], lr(contract.groups[0][1]))
        else:
            txs = {f"group{k}": self._make_for(c, lr(c)) for k, c in live}
            txs["frozen"] = optax.set_to_zero()
            labels = ["frozen"] * sum(len(a) for a, _ in contract.groups)
            for k, (arrays, _c) in enumerate(contract.groups):
                for i in arrays:
                    labels[i] = "frozen" if i in frozen else f"group{k}"
            self._tx = optax.multi_transform(txs, labels)
            # each group's state holds its own arrays only (MaskedNode for the others) and its
            # own count; set_to_zero keeps none: the probe finds the roles per group
            owned = [[i for i in contract.groups[k][0] if i not in frozen] for k, _c in live]
            self._discovery.set_groups([(a, c.betas) for a, (_k, c) in zip(owned, live)])

    def _dev(self) -> Any:
        if self.device == "cuda":
            return self._jax.devices("gpu")[0]
        return self._jax.devices("cpu")[0]

    def _arr(self, a: np.ndarray, dtype: Any = None) -> Any:
        import jax.numpy as jnp

        x = jnp.asarray(np.asarray(a, dtype=np.float64), dtype=dtype or self._dt)
        return self._jax.device_put(x, self._dev())

    def _snapshots(
        self, dt: str, shapes: list[tuple[int, ...]], g1: list[np.ndarray], g2: list[np.ndarray]
    ) -> list[dict[Any, Any]]:
        """The probe for ``state_discovery``: the state's leaves from ``init`` of zero parameters
        and after each of two updates of them (zero at both) (compiled as the port runs: mostly the same shapes)."""
        ndt = np.dtype(jnp_dtype(dt))
        params: Any = [np.zeros(s, dtype=ndt) for s in shapes]
        with self._jax.default_device(self._dev()):
            st = self._tx.init(params)
            snaps = [_leaves(st)]
            for g in (g1, g2):  # zero parameters at each step: weight decay adds nothing to g
                _, st = self._update([x.astype(ndt) for x in g], st, params)
                snaps.append(_leaves(st))
        return snaps

    def layout(self, shapes: Sequence[tuple[int, ...]]) -> StateLayout:
        """Where this transformation keeps its state, for parameters of these shapes (cached)."""
        return self._discovery.get(shapes)

    def state_layout(self) -> str:
        """One line for the report: where the state was found, or why it could not be."""
        layout = self._discovery.current or self.layout([np.shape(p) for p in self._params])
        return layout.describe()

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        cpu = self.device == "cpu"
        self._params = [self._np(p) if cpu else self._arr(p) for p in params]
        layout = self.layout([np.shape(p) for p in params])
        # an amsgrad state whose vmax was not found is refused too: never a stale maximum
        if state is not None and (why := layout.refusal(state.vmax is not None)):
            raise NotImplementedError(f"cannot continue from a given state: {why}")
        if self._init_state is None or state is None:
            with self._jax.default_device(self._dev()):
                self._init_state = self._tx.init(self._params)
        self._state = self._init_state
        if state is None:
            return
        pairs, treedef = _flatten(self._state)
        index = {path: k for k, (path, _) in enumerate(pairs)}
        values = [np.array(np.asarray(leaf), copy=True) for _, leaf in pairs]
        vmax = state.vmax if state.vmax is not None else [np.zeros(np.shape(p)) for p in params]
        for role, arrays in (("m", state.m), ("v", state.v), ("vmax", vmax)):
            for view, flat in scatter(getattr(layout, role), arrays):
                k = index[view.path]
                target = values[k] if view.sub is None else values[k][view.sub]
                target[...] = flat.reshape(np.shape(target)).astype(values[k].dtype)
        for c in layout.counters:
            k = index[c.path]
            values[k] = np.asarray(c.scale * int(state.step) + c.offset, dtype=values[k].dtype)
        leaves = [v if cpu else self._arr(v, v.dtype) for v in values]
        self._state = self._jax.tree_util.tree_unflatten(treedef, leaves)

    def _np(self, a: np.ndarray) -> np.ndarray:
        """Host array in the port's dtype (jit transfers it with the call)."""
        return np.asarray(np.asarray(a, dtype=np.float64).astype(self._np_dt))

    def step(self, grads: Sequence[np.ndarray]) -> None:
        # a frozen parameter's gradient is None: set_to_zero ignores the zeros given instead
        grads = [
            np.zeros(np.shape(p)) if x is None else x
            for x, p in zip(grads, self._params, strict=True)
        ]
        g = [self._np(x) for x in grads] if self.device == "cpu" else [self._arr(x) for x in grads]
        with self._jax.default_device(self._dev()):  # host arrays: run where the port says
            self._params, self._state = self._update(g, self._state, self._params)

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(_to_numpy(p) for p in self._params)

    def state(self) -> PortState | None:
        layout = self._discovery.current
        if layout is None or not layout.readable or self._state is None:
            return None
        found = _leaves(self._state)
        shapes = [tuple(np.shape(p)) for p in self._params]
        return PortState(
            step_of(found, layout.counters),
            gather(found, layout.m, shapes),
            gather(found, layout.v, shapes),
        )

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        return None

    def lay_out(self, layouts: Sequence[str]) -> None:
        """No layout to give: a jax array has no strides a user sets (XLA chooses them)."""
        if any(lay != "contiguous" for lay in layouts):
            raise NotImplementedError(
                "a jax array has no memory layout a user sets (XLA lays arrays out itself): "
                "nothing to test"
            )

    def compile_step(self) -> None:
        """Nothing more to compile: every scenario runs the step under ``jax.jit`` already."""
        raise NotImplementedError("the jax step runs under jax.jit in every scenario already")

    def resume(self) -> None:
        """Checkpoint round trip (``_checkpoint.pytree_reload``) into the tree of a fresh
        ``init`` over fresh parameters holding the current values."""
        cpu = self.device == "cpu"
        values = [np.array(np.asarray(p), copy=True) for p in self._params]
        self._params = values if cpu else [self._arr(v, v.dtype) for v in values]
        with self._jax.default_device(self._dev()):
            fresh = self._tx.init(self._params)
        self._state = pytree_reload(self._jax, self._state, fresh)
