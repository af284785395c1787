"""An outside implementer's optax-style Adam ("kit"), run per param group by optax.multi_transform.

``kit_adam(learning_rate, b1, b2, eps, weight_decay, decoupled)`` returns an
``optax.GradientTransformation`` whose state is its own ``KitState(steps, first, second)``:
$m \\leftarrow b_1 m + (1-b_1) g$, $v \\leftarrow b_2 v + (1-b_2) g^2$ with
$g \\leftarrow g + \\lambda\\theta$ unless ``decoupled``, and
$\\theta \\leftarrow \\theta - \\text{lr}_t\\,(\\hat m/(\\sqrt{\\hat v}+\\epsilon) + \\lambda\\theta)$
(the $\\lambda\\theta$ term when decoupled), $\\text{lr}_t$ a float or a schedule of the count.
Written from the mathematics. Two planted variants, mistakes such a kit makes:

- ``shadow=True``: the state keeps a second copy of v per group, ``KitShadowState(steps, first,
  second, second_fast)`` (say, in the layout its kernel wants), updated as ``second`` is but
  the one the step uses. Free-running both are equal to the bit; a state written from outside
  (a checkpoint restored into ``second``, or the harness's re-synced step) leaves the copy stale.
- :class:`HoistedBuilder`: builds one transformation per param group but reads ``eps`` once,
  from the first group it builds (the shared options hoisted out of the group loop): one group
  is right, the second group uses the first's eps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class KitState(NamedTuple):
    steps: jax.Array
    first: Any
    second: Any


class KitShadowState(NamedTuple):
    steps: jax.Array
    first: Any
    second: Any
    second_fast: Any


def kit_adam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    shadow: bool = False,
) -> optax.GradientTransformation:
    tm = jax.tree_util.tree_map

    def init(params: Any) -> Any:
        z = tm(jnp.zeros_like, params)
        steps = jnp.zeros([], jnp.int32)
        if shadow:
            return KitShadowState(steps, z, tm(jnp.zeros_like, z), tm(jnp.zeros_like, z))
        return KitState(steps, z, tm(jnp.zeros_like, z))

    def update(grads: Any, state: Any, params: Any = None) -> Any:
        if weight_decay and not decoupled:
            grads = tm(lambda g, p: g + weight_decay * p, grads, params)
        lr = learning_rate(state.steps) if callable(learning_rate) else learning_rate
        t = state.steps + 1
        first = tm(lambda m, g: b1 * m + (1 - b1) * g, state.first, grads)
        second = tm(lambda v, g: b2 * v + (1 - b2) * g * g, state.second, grads)
        used = second
        if shadow:  # the kernel reads its own copy, advanced the same way
            used = tm(lambda v, g: b2 * v + (1 - b2) * g * g, state.second_fast, grads)

        def delta(m: jax.Array, v: jax.Array, p: jax.Array) -> jax.Array:
            tt = t.astype(m.dtype)
            d = (m / (1 - b1**tt)) / (jnp.sqrt(v / (1 - b2**tt)) + eps)
            if weight_decay and decoupled:
                d = d + weight_decay * p
            out: jax.Array = -lr * d
            return out

        updates = tm(delta, first, used, params)
        if shadow:
            return updates, KitShadowState(t, first, second, used)
        return updates, KitState(t, first, second)

    return optax.GradientTransformation(init, update)


def make_for(c: Any, learning_rate: Any, shadow: bool = False) -> optax.GradientTransformation:
    """The kit for a reference ``AdamConfig`` ``c`` (what the adapter calls per param group)."""
    b1, b2 = c.betas
    decoupled = c.weight_decay_mode == "decoupled"
    return kit_adam(learning_rate, b1, b2, c.eps, c.weight_decay, decoupled, shadow)


class HoistedBuilder:
    """``make_for`` with the planted bug: ``eps`` taken from the first config it is given."""

    def __init__(self) -> None:
        self._eps: float | None = None

    def __call__(self, c: Any, learning_rate: Any) -> optax.GradientTransformation:
        if self._eps is None:
            self._eps = float(c.eps)
        b1, b2 = c.betas
        decoupled = c.weight_decay_mode == "decoupled"
        return kit_adam(learning_rate, b1, b2, self._eps, c.weight_decay, decoupled)
