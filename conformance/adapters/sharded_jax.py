"""An optax transformation on a JAX device mesh: parameters, gradients and state sharded with
``NamedSharding`` over a 1-D ``Mesh`` of N devices, the update jitted.

:class:`MeshOptaxPort` is :class:`~conformance.adapters._jax.OptaxPort` with its arrays placed on
the mesh (axis ``"x"``). JAX arrays at rest must split evenly, so a leaf is sharded along its
first dimension that N divides (:func:`leaf_spec`; a zero-size leaf is replicated), and a leaf with no
such dimension is
replicated at rest and constrained inside the jitted update with ``with_sharding_constraint``
along dimension 0, which XLA does split unevenly (it pads internally and masks the padding in
reductions). The moments take their parameter's sharding. In XLA a layer's sums and minimum
over a sharded leaf become cross-device reductions (all-reduce) without anything in the
transformation knowing: :func:`collectives` counts them in the compiled step.

On CPU the N devices exist only when ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (or
more) is set before jax is first imported; :func:`mesh` raises ``RuntimeError`` otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._jax import OptaxPort

AXIS = "x"


def mesh(n: int, platform: str = "cpu") -> Any:
    """A 1-D mesh over the first ``n`` devices of ``platform``."""
    import jax
    from jax.sharding import Mesh

    devs = jax.devices(platform)
    if len(devs) < n:
        raise RuntimeError(
            f"a {n}-device mesh needs {n} {platform} devices, jax has {len(devs)}; on CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before jax is imported"
        )
    return Mesh(np.array(devs[:n]), (AXIS,))


def spec(*axes: str | None) -> Any:
    """``PartitionSpec(*axes)`` (typed here once: jax leaves it untyped)."""
    from jax.sharding import PartitionSpec

    ps: Any = PartitionSpec
    return ps(*axes)


def leaf_spec(shape: Sequence[int], n: int) -> tuple[Any, bool]:
    """(PartitionSpec at rest, whether the leaf is split unevenly inside the step): the first
    dimension that ``n`` divides is sharded; otherwise replicated at rest, dimension 0 uneven;
    a zero-size leaf replicated."""
    if 0 in shape:  # nothing to split (and XLA returns empty arrays replicated)
        return spec(), False
    for d, size in enumerate(shape):
        if size > 0 and size % n == 0:
            return spec(*([None] * d), AXIS), False
    return spec(), len(shape) > 0 and shape[0] > 0


def collectives(compiled_text: str) -> int:
    """Cross-device collectives (all-reduce, all-gather, reduce-scatter, all-to-all,
    collective-permute) in the text of a compiled XLA module."""
    pat = (
        r"=\s*\S+\s+(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)(-start)?\("
    )
    return len(re.findall(pat, compiled_text))


class MeshOptaxPort(OptaxPort):
    """:class:`~conformance.adapters._jax.OptaxPort` on an ``n``-device mesh (module docstring)."""

    def __init__(
        self, name: str, make_tx: Callable[[], Any], dtype: str = "float32", device: str = "cpu",
        *, devices: int, state_map: dict[str, str] | None = None,
        betas: tuple[float, float] | None = None,
        make_for: Callable[[Any, Any], Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        group_kwargs: Callable[[Any], dict[str, Any]] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            name, make_tx, dtype, device, jit=False, state_map=state_map, betas=betas,
            make_for=make_for, kwargs=kwargs, group_kwargs=group_kwargs,
        )  # fmt: skip
        import optax

        jax = self._jax
        self.n_devices = devices
        self._mesh = mesh(devices, "gpu" if device == "cuda" else "cpu")
        self._replicated = self._named(spec())

        def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
            grads = [self._constrain(g) for g in grads]
            params = [self._constrain(p) for p in params]
            # self._tx at trace time: configure() (a contract's groups, schedule) may replace it
            updates, new_state = self._tx.update(grads, state, params)
            # back to the placement at rest, so the next step takes what this one returns
            return self._at_rest(optax.apply_updates(params, updates)), self._at_rest(new_state)

        self._jitted: Any = jax.jit(update)
        self._compiled: Any = None
        self.compiled_collectives: int | None = None

    def _named(self, where: Any) -> Any:
        from jax.sharding import NamedSharding

        return NamedSharding(self._mesh, where)

    def _sharding(self, shape: Sequence[int]) -> Any:
        return self._named(leaf_spec(shape, self.n_devices)[0])

    def _constrain(self, x: Any) -> Any:
        _, uneven = leaf_spec(x.shape, self.n_devices)
        if not uneven:
            return x
        wsc: Any = self._jax.lax.with_sharding_constraint
        return wsc(x, self._named(spec(AXIS)))

    def _at_rest(self, tree: Any) -> Any:
        """``tree`` constrained to its placement at rest (inside the jitted step)."""
        jax = self._jax

        wsc: Any = jax.lax.with_sharding_constraint

        def pin(x: Any) -> Any:
            return wsc(x, self._sharding(x.shape) if x.ndim else self._replicated)

        return jax.tree_util.tree_map(pin, tree)

    def _place(self, tree: Any) -> Any:
        """Every leaf of ``tree`` on the mesh, sharded by its shape (scalars replicated)."""
        jax = self._jax

        def put(a: Any) -> Any:
            arr = np.asarray(a)
            return jax.device_put(arr, self._sharding(arr.shape) if arr.ndim else self._replicated)

        return jax.tree_util.tree_map(put, tree)

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        cpu_device = self.device
        self.device = "cpu"  # host arrays first (OptaxPort's CPU route), then placed
        try:
            super().reset(params, state)
        finally:
            self.device = cpu_device
        self._params = self._place(self._params)
        self._state = self._place(self._state)

    def step(self, grads: Sequence[np.ndarray]) -> None:
        g = self._place([self._np(x) for x in grads])
        if self._compiled is None:  # compiled once per port; its text gives the collectives
            self._compiled = self._jitted.lower(g, self._state, self._params).compile()
            self.compiled_collectives = collectives(self._compiled.as_text())
        self._params, self._state = self._compiled(g, self._state, self._params)

    def shardings(self) -> list[str]:
        """How each parameter is laid out now (for tests and reports)."""
        return [str(p.sharding.spec) for p in self._params]
