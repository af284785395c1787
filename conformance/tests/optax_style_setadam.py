"""An optax-style SET-Adam as an outside implementer writes it: one ``weight_decay`` argument, L2.

``setadam(learning_rate, b1, b2, eps, tau, weight_decay)`` returns an
``optax.GradientTransformation`` whose state is its own ``SetAdamState(t, mom, vel)``; weight decay
is coupled, $g \\leftarrow g + \\lambda\\theta$ (there is no mode argument: the user declares
``--weight-decay-mode l2``). One layer per leaf: $c = \\bar v^2/\\overline{v^2}$,
$w = \\sqrt{c v / b_2 + \\epsilon}$, $\\tilde w = w - \\tau\\min w$,
$\\theta \\leftarrow \\theta - \\text{lr}\\,(m/b_1)/\\tilde w$. Written from the mathematics.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class SetAdamState(NamedTuple):
    t: jax.Array
    mom: Any
    vel: Any


def _wt(v: jax.Array, bc2: jax.Array, eps: float, tau: float) -> jax.Array:
    if v.size == 0:
        return v
    ms = jnp.mean(v * v)
    c = jnp.where(ms > 0, jnp.mean(v) ** 2 / jnp.where(ms > 0, ms, 1), 1)
    w = jnp.sqrt(c * v / bc2 + eps)
    return w - tau * jnp.min(w)


def setadam(
    learning_rate: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    tau: float = 0.5,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    def init(params: Any) -> SetAdamState:
        z = jax.tree_util.tree_map(jnp.zeros_like, params)
        return SetAdamState(jnp.zeros([], jnp.int32), z, jax.tree_util.tree_map(jnp.zeros_like, z))

    def update(grads: Any, state: SetAdamState, params: Any = None) -> Any:
        if weight_decay:
            grads = jax.tree_util.tree_map(lambda g, p: g + weight_decay * p, grads, params)
        t = state.t + 1
        mom = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mom, grads)
        vel = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state.vel, grads)

        def step(m: jax.Array, v: jax.Array) -> jax.Array:
            tt = t.astype(m.dtype)
            bc1, bc2 = 1 - b1**tt, 1 - b2**tt
            return -learning_rate * (m / bc1) / _wt(v, bc2, eps, tau)

        return jax.tree_util.tree_map(step, mom, vel), SetAdamState(t, mom, vel)

    return optax.GradientTransformation(init, update)
