"""Deliberately wrong SET-Adam optax transformations for the meta-tests (and one correct control).

Written from the mathematics, never from ``setadam_ref``. Each public factory is called like the
third-party jax target of ``setadam-conformance check``::

    f(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, tau=0.5, weight_decay=0.0,
      weight_decay_mode="decoupled", maximize=False) -> optax.GradientTransformation

(weight decay decoupled by default, as optax.adamw and the harness's third-party JAX convention).

State: ``WrongSETAdamState(count, mu, nu)`` (nu unscaled), one layer per pytree leaf, like our
JAX port. ``learning_rate`` may be a schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "WrongSETAdamState",
    "eps_outside_sqrt",
    "no_bias_correction1",
    "setadam_control",
    "whole_model_one_layer",
]


class WrongSETAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # the optax field name shadows tuple.count
    mu: Any
    nu: Any


def _cos2(v: jax.Array) -> jax.Array:
    """cos^2(v, 1) on v / max(v); 1 for an all-zero (or empty) layer."""
    if v.size == 0:
        return jnp.ones((), v.dtype)
    top = jnp.max(v)
    safe = jnp.where(top > 0, top, jnp.ones_like(top))
    u = v / safe
    s1 = jnp.sum(u)
    s2 = jnp.sum(u * u)
    c = s1 * s1 / (v.size * jnp.where(s2 > 0, s2, jnp.ones_like(s2)))
    return jnp.where(top > 0, c, jnp.ones_like(c))


def _factory(variant: str) -> Callable[..., optax.GradientTransformation]:
    def make(
        learning_rate: float | Callable[[Any], Any] = 1e-3,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        tau: float = 0.5,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ) -> optax.GradientTransformation:
        def init_fn(params: Any) -> WrongSETAdamState:
            zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
            return WrongSETAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

        def update_fn(updates: Any, state: WrongSETAdamState, params: Any = None) -> Any:
            lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
            leaves, treedef = jax.tree_util.tree_flatten(updates)
            p_leaves = jax.tree_util.tree_leaves(params) if params is not None else None
            decoupled = weight_decay != 0.0 and weight_decay_mode == "decoupled"
            if weight_decay != 0.0 and p_leaves is None:
                raise ValueError("weight decay needs params")
            g = [-x if maximize else x for x in leaves]
            if weight_decay != 0.0 and not decoupled:
                assert p_leaves is not None
                g = [x + weight_decay * p for x, p in zip(g, p_leaves, strict=True)]
            mu = [
                b1 * m + (1 - b1) * x
                for m, x in zip(jax.tree_util.tree_leaves(state.mu), g, strict=True)
            ]
            nu = [
                b2 * v + (1 - b2) * x * x
                for v, x in zip(jax.tree_util.tree_leaves(state.nu), g, strict=True)
            ]
            count = state.count + 1
            dt = leaves[0].dtype if leaves else jnp.float32
            t = count.astype(dt)
            bc1 = 1 - b1**t
            bc2 = 1 - b2**t
            if variant == "whole_model_one_layer" and nu:
                flat = jnp.concatenate([v.ravel() for v in nu])
                c_all = _cos2(flat)
                w = [jnp.sqrt(c_all * v / bc2 + eps) for v in nu]
                w_min = jnp.min(jnp.concatenate([x.ravel() for x in w]))
                wt = [x - tau * w_min for x in w]
            else:
                wt = []
                for v in nu:
                    c = _cos2(v)
                    if variant == "eps_outside_sqrt":
                        w_l = jnp.sqrt(c * v / bc2) + eps
                    else:
                        w_l = jnp.sqrt(c * v / bc2 + eps)
                    wt.append(w_l - tau * jnp.min(w_l) if w_l.size else w_l)
            step = lr if variant == "no_bias_correction1" else lr / bc1
            out = [-step * m / x for m, x in zip(mu, wt, strict=True)]
            if decoupled:
                assert p_leaves is not None
                out = [u - lr * weight_decay * p for u, p in zip(out, p_leaves, strict=True)]
            new_state = WrongSETAdamState(
                count,
                jax.tree_util.tree_unflatten(treedef, mu),
                jax.tree_util.tree_unflatten(treedef, nu),
            )
            return jax.tree_util.tree_unflatten(treedef, out), new_state

        return optax.GradientTransformation(init_fn, update_fn)

    make.__name__ = variant
    return make


setadam_control = _factory("control")
setadam_control.__doc__ = "Correct SET-Adam (control for the JAX wrong ports): must be accepted."

eps_outside_sqrt = _factory("eps_outside_sqrt")
eps_outside_sqrt.__doc__ = (
    "Bug class: eps outside the square root, w = sqrt(vs / bc2) + eps. Stage: epsilon_embedding "
    "(seen in the parameters; the state is right), from step 1. Catalogue: eps_outside_sqrt."
)

whole_model_one_layer = _factory("whole_model_one_layer")
whole_model_one_layer.__doc__ = (
    "Bug class: wrong layer split, the whole pytree is one layer (cos^2 and min global). Stage: "
    "down_scaling, from step 1, with more than one leaf. Catalogue: whole_model_one_layer."
)

no_bias_correction1 = _factory("no_bias_correction1")
no_bias_correction1.__doc__ = (
    "Bug class: lr not divided by 1 - b1^t. Stage: update, from step 1 (decays like b1^t). "
    "Catalogue: no_bias_correction1."
)
