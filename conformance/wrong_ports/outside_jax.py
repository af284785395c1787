"""Planted optax ports as outside implementers write them: their own state names and containers,
one planted mistake per stage of SET-Adam (and a control).

Written from the mathematics, never from ``setadam_ref``. Each public factory is called like the
third-party JAX target of ``setadam-conformance check``::

    f(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, tau=0.5, weight_decay=0.0,
      weight_decay_mode="decoupled", maximize=False) -> optax.GradientTransformation

None keeps optax's ``count``/``mu``/``nu``:

- ``moments_v_eps_in_place`` (stage v): ``Moments(iteration, first, second)``; eps added to the
  stored second moment every step;
- ``scaling_unbiased_var`` (down-scaling): a dict ``{"t": ..., "mom": {"m": [...], "v": [...]}}``;
  cos^2 as mean^2 / (mean^2 + var) with the unbiased d - 1 variance;
- ``embedding_tf_style`` (epsilon-embedding): ``optax.chain(direction, scale(-lr))`` whose state
  is ``TFState(step, exp_avg, exp_avg_var)``; eps added to the unscaled sqrt(vs), sqrt(bc2)
  folded into the step size;
- ``translating_min_before_scaling`` (down-translating): ``optax.inject_hyperparams`` around a
  ``Slots(k, slots=(m, v))`` state; the layer minimum from the unscaled v;
- ``update_bias_corrections_float32`` (update): ``Acc(n, acc1, acc2)``; the bias corrections
  computed in float32 (shows in float64 only);
- ``outside_control``: the ``Moments`` container with no mistake (must be accepted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "embedding_tf_style",
    "moments_v_eps_in_place",
    "outside_control",
    "scaling_unbiased_var",
    "translating_min_before_scaling",
    "update_bias_corrections_float32",
]


class Moments(NamedTuple):
    iteration: jax.Array
    first: Any
    second: Any


class TFState(NamedTuple):
    step: jax.Array
    exp_avg: Any
    exp_avg_var: Any


class Slots(NamedTuple):
    k: jax.Array
    slots: tuple[Any, Any]


class Acc(NamedTuple):
    n: jax.Array
    acc1: Any
    acc2: Any


def _cos2(v: jax.Array, bug: str) -> jax.Array:
    if v.size == 0:
        return jnp.ones((), v.dtype)
    if bug == "unbiased_var":
        mu = jnp.mean(v)
        return mu * mu / (mu * mu + jnp.var(v, ddof=1))
    ms = jnp.mean(v * v)
    safe = jnp.where(ms > 0, ms, jnp.ones_like(ms))
    return jnp.where(ms > 0, jnp.mean(v) ** 2 / safe, jnp.ones_like(ms))


def _direction(
    bug: str, b1: float, b2: float, eps: float, tau: float, t: jax.Array,
    m: list[jax.Array], v: list[jax.Array],
) -> list[jax.Array]:  # fmt: skip
    """m_hat / wt for every leaf (wt_l = w_l - tau min w_l, one layer per leaf)."""
    dt = m[0].dtype if m else jnp.float32
    tt = t.astype(dt)
    if bug == "bias_f32":
        bc1 = (1 - jnp.float32(b1) ** tt.astype(jnp.float32)).astype(dt)
        bc2 = (1 - jnp.float32(b2) ** tt.astype(jnp.float32)).astype(dt)
    else:
        bc1, bc2 = 1 - b1**tt, 1 - b2**tt
    out = []
    for mi, vi in zip(m, v, strict=True):
        c = _cos2(vi, "unbiased_var" if bug == "unbiased_var" else "")
        if bug == "tf_style":
            w = (jnp.sqrt(c * vi) + eps) / jnp.sqrt(bc2)  # sqrt(bc2) moved into the step size
        else:
            w = jnp.sqrt(c * vi / bc2 + eps)
        if w.size == 0:
            out.append(w)
            continue
        w_min = jnp.sqrt(jnp.min(vi) / bc2 + eps) if bug == "min_unscaled" else jnp.min(w)
        out.append((mi / bc1) / (w - tau * w_min))
    return out


def _effective(
    g: list[jax.Array], p: list[jax.Array] | None, wd: float, l2: bool, maximize: bool
) -> list[jax.Array]:
    g = [-x if maximize else x for x in g]
    if wd and l2:
        assert p is not None
        g = [x + wd * q for x, q in zip(g, p, strict=True)]
    return g


def _factory(bug: str, name: str) -> Callable[..., optax.GradientTransformation]:
    def make(
        learning_rate: float = 1e-3,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        tau: float = 0.5,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ) -> optax.GradientTransformation:
        l2 = weight_decay_mode == "l2"

        def moments(
            g: list[jax.Array], m: list[jax.Array], v: list[jax.Array]
        ) -> tuple[list[jax.Array], list[jax.Array]]:
            m = [b1 * a + (1 - b1) * x for a, x in zip(m, g, strict=True)]
            v = [b2 * a + (1 - b2) * x * x for a, x in zip(v, g, strict=True)]
            if bug == "v_eps":
                v = [a + eps for a in v]
            return m, v

        def decay(d: list[jax.Array], p: list[jax.Array] | None, lr: Any) -> list[jax.Array]:
            if weight_decay and not l2:
                assert p is not None
                return [u - lr * weight_decay * q for u, q in zip(d, p, strict=True)]
            return d

        def steps(
            updates: Any, t: jax.Array, m0: Any, v0: Any, params: Any, lr: Any, scale: bool
        ) -> tuple[Any, jax.Array, list[jax.Array], list[jax.Array]]:
            leaves, tree = jax.tree_util.tree_flatten(updates)
            p = jax.tree_util.tree_leaves(params) if params is not None else None
            g = _effective(leaves, p, weight_decay, l2, maximize)
            m, v = moments(g, jax.tree_util.tree_leaves(m0), jax.tree_util.tree_leaves(v0))
            t = t + 1
            d = _direction(bug, b1, b2, eps, tau, t, m, v)
            out = decay([-lr * x for x in d], p, lr) if scale else d
            return jax.tree_util.tree_unflatten(tree, out), t, m, v

        def zeros(params: Any) -> Any:
            return jax.tree_util.tree_map(jnp.zeros_like, params)

        def wrap(tree: Any, leaves: list[jax.Array]) -> Any:
            return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), leaves)

        if bug == "tf_style":  # a direction transformation chained with the learning rate

            def init_d(params: Any) -> TFState:
                return TFState(jnp.zeros([], jnp.int32), zeros(params), zeros(params))

            def update_d(updates: Any, state: TFState, params: Any = None) -> Any:
                out, t, m, v = steps(
                    updates, state.step, state.exp_avg, state.exp_avg_var, params, 1.0, False
                )
                if weight_decay and not l2:
                    p = jax.tree_util.tree_leaves(params)
                    out = wrap(
                        updates,
                        [
                            u + weight_decay * q
                            for u, q in zip(jax.tree_util.tree_leaves(out), p, strict=True)
                        ],
                    )
                return out, TFState(t, wrap(updates, m), wrap(updates, v))

            return optax.chain(
                optax.GradientTransformation(init_d, update_d), optax.scale(-learning_rate)
            )

        if bug == "min_unscaled":  # wrapped by inject_hyperparams, as tuned ports are

            def core(learning_rate: Any) -> optax.GradientTransformation:
                def init_c(params: Any) -> Slots:
                    return Slots(jnp.zeros([], jnp.int32), (zeros(params), zeros(params)))

                def update_c(updates: Any, state: Slots, params: Any = None) -> Any:
                    out, k, m, v = steps(
                        updates, state.k, *state.slots, params, learning_rate, True
                    )
                    return out, Slots(k, (wrap(updates, m), wrap(updates, v)))

                return optax.GradientTransformation(init_c, update_c)

            return optax.inject_hyperparams(core)(learning_rate=learning_rate)

        def init_fn(params: Any) -> Any:
            if bug == "unbiased_var":
                return {
                    "t": jnp.zeros([], jnp.int32),
                    "mom": {"m": zeros(params), "v": zeros(params)},
                }
            if bug == "bias_f32":
                return Acc(jnp.zeros([], jnp.int32), zeros(params), zeros(params))
            return Moments(jnp.zeros([], jnp.int32), zeros(params), zeros(params))

        def update_fn(updates: Any, state: Any, params: Any = None) -> Any:
            if bug == "unbiased_var":
                out, t, m, v = steps(
                    updates,
                    state["t"],
                    state["mom"]["m"],
                    state["mom"]["v"],
                    params,
                    learning_rate,
                    True,
                )
                return out, {"t": t, "mom": {"m": wrap(updates, m), "v": wrap(updates, v)}}
            if bug == "bias_f32":
                out, t, m, v = steps(
                    updates, state.n, state.acc1, state.acc2, params, learning_rate, True
                )
                return out, Acc(t, wrap(updates, m), wrap(updates, v))
            out, t, m, v = steps(
                updates, state.iteration, state.first, state.second, params, learning_rate, True
            )
            return out, Moments(t, wrap(updates, m), wrap(updates, v))

        return optax.GradientTransformation(init_fn, update_fn)

    make.__name__ = name
    return make


outside_control = _factory("", "outside_control")
moments_v_eps_in_place = _factory("v_eps", "moments_v_eps_in_place")
scaling_unbiased_var = _factory("unbiased_var", "scaling_unbiased_var")
embedding_tf_style = _factory("tf_style", "embedding_tf_style")
translating_min_before_scaling = _factory("min_unscaled", "translating_min_before_scaling")
update_bias_corrections_float32 = _factory("bias_f32", "update_bias_corrections_float32")
