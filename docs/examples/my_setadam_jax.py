"""A small, self-contained SET-Adam for JAX/optax, written from the mathematics.

This is the port used in docs/src/guide/verify-your-port.md: an optax GradientTransformation,
one layer per pytree leaf, decoupled weight decay as in optax.adamw, jit-compatible. It never
imports setadam_ref.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class MySETAdamState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_my_setadam(b1=0.9, b2=0.999, eps=1e-8, tau=0.5):
    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return MySETAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        bc1 = 1 - b1**count
        bc2 = 1 - b2**count

        def leaf(m, v):
            if v.size == 0:
                return jnp.zeros_like(m)
            # (S) down-scaling, overflow-safe: c is evaluated on v / max(v)
            v_max = jnp.max(v)
            u = v / jnp.where(v_max > 0, v_max, 1)
            c = jnp.where(v_max > 0, jnp.sum(u) ** 2 / (v.size * jnp.sum(u * u)), 1)
            w = jnp.sqrt(c * v / bc2 + eps)  # (E) eps inside the square root
            wt = w - tau * jnp.min(w)  # (T)
            return (m / bc1) / wt

        return jax.tree.map(leaf, mu, nu), MySETAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def my_setadam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, tau=0.5, weight_decay=0.0):
    return optax.chain(
        scale_by_my_setadam(b1, b2, eps, tau),
        optax.add_decayed_weights(weight_decay),  # decoupled, multiplied by lr below
        optax.scale_by_learning_rate(learning_rate),
    )
