"""Generic optax GradientTransformation port (jax/optax imported lazily, only here).

Parameters are a list of jax arrays (one pytree leaf per array) of the port's dtype; each step runs
``updates, state = tx.update(grads, state, params); params = optax.apply_updates(params, updates)``
under ``jax.jit`` (compiled once per port, i.e. per scenario), as users run it. A re-synced step
continues from a given state by replacing, in the transformation's state pytree, the first
node with fields ``count``, ``mu`` and ``nu`` (``ScaleByAdamState``, our ``ScaleBySETAdamState``)
and, for amsgrad, ``nu_max``. float64 needs ``jax_enable_x64``, which this module turns on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..interface import PortState

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


def _find_moments(state: Any) -> Any:
    """The first NamedTuple node with count/mu/nu fields in an optax state pytree, or None."""
    fields = getattr(state, "_fields", None)
    if fields is not None and {"count", "mu", "nu"} <= set(fields):
        return state
    if isinstance(state, (tuple, list)):
        for s in state:
            found = _find_moments(s)
            if found is not None:
                return found
    inner = getattr(state, "inner_state", None)
    if inner is not None:
        return _find_moments(inner)
    return None


def _replace_moments(state: Any, new: Any) -> Any:
    fields = getattr(state, "_fields", None)
    if fields is not None and {"count", "mu", "nu"} <= set(fields):
        return new
    if fields is not None:  # other NamedTuples (e.g. InjectHyperparamsState): recurse by field
        return type(state)(*(_replace_moments(getattr(state, f), new) for f in fields))
    if isinstance(state, tuple):
        return tuple(_replace_moments(s, new) for s in state)
    if isinstance(state, list):
        return [_replace_moments(s, new) for s in state]
    return state


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

        def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
            updates, new_state = self._tx.update(grads, state, params)
            return optax.apply_updates(params, updates), new_state

        self._update = jax.jit(update) if jit else update

    def _dev(self) -> Any:
        if self.device == "cuda":
            return self._jax.devices("gpu")[0]
        return self._jax.devices("cpu")[0]

    def _arr(self, a: np.ndarray, dtype: Any = None) -> Any:
        import jax.numpy as jnp

        x = jnp.asarray(np.asarray(a, dtype=np.float64), dtype=dtype or self._dt)
        return self._jax.device_put(x, self._dev())

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        cpu = self.device == "cpu"
        self._params = [self._np(p) if cpu else self._arr(p) for p in params]
        if self._init_state is None or state is None:
            with self._jax.default_device(self._dev()):
                self._init_state = self._tx.init(self._params)
        self._state = self._init_state
        if state is None:
            return
        node = _find_moments(self._state)
        if node is None:
            raise NotImplementedError("no count/mu/nu node in the optax state")

        def conv(a: np.ndarray, like: Any) -> Any:
            return (
                np.asarray(a, dtype=np.float64).astype(like.dtype)
                if cpu
                else self._arr(a, like.dtype)
            )

        repl: dict[str, Any] = {
            "count": np.asarray(state.step, dtype=node.count.dtype),
            "mu": [conv(m, old) for m, old in zip(state.m, node.mu, strict=True)],
            "nu": [conv(v, old) for v, old in zip(state.v, node.nu, strict=True)],
        }
        if "nu_max" in node._fields and state.vmax is not None:
            repl["nu_max"] = [conv(v, old) for v, old in zip(state.vmax, node.nu_max, strict=True)]
        self._state = _replace_moments(self._state, node._replace(**repl))

    def _np(self, a: np.ndarray) -> np.ndarray:
        """Host array in the port's dtype (jit transfers it with the call)."""
        return np.asarray(np.asarray(a, dtype=np.float64).astype(self._np_dt))

    def step(self, grads: Sequence[np.ndarray]) -> None:
        g = [self._np(x) for x in grads] if self.device == "cpu" else [self._arr(x) for x in grads]
        with self._jax.default_device(self._dev()):  # host arrays: run where the port says
            self._params, self._state = self._update(g, self._state, self._params)

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(_to_numpy(p) for p in self._params)

    def state(self) -> PortState | None:
        node = _find_moments(self._state)
        if node is None:
            return None
        return PortState(
            int(np.asarray(node.count)),
            tuple(_to_numpy(m) for m in node.mu),
            tuple(_to_numpy(v) for v in node.nu),
        )

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        return None
