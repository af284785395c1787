r"""SET-Adam for JAX, optax style: ``scale_by_setadam`` and ``setadam``.

Written from the mathematics (one layer per pytree leaf):

$$
\begin{aligned}
\mu_t &= \beta_1 \mu_{t-1} + (1-\beta_1) g_t, \qquad
\nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) g_t^2 \quad(\nu_t \text{ kept unscaled})\\
c &= \frac{(\sum_i \nu_i)^2}{d \sum_i \nu_i^2}, \qquad
w = \sqrt{\frac{c\,\nu_t}{1-\beta_2^t} + \epsilon}, \qquad
\tilde w = w - \tau \min_i w_i, \qquad
u_t = \frac{\mu_t / (1-\beta_1^t)}{\tilde w}
\end{aligned}
$$

``scale_by_setadam`` returns :math:`u_t`; ``setadam`` chains it with weight decay and
``optax.scale_by_learning_rate`` (so ``learning_rate`` may be a schedule of the step count).

Numerics: leaves of dtype float64 are computed in float64 (needs ``jax_enable_x64``), every other
floating dtype in float32; ``mu``/``nu`` keep the leaf's dtype (like ``optax.scale_by_adam``) and
the update is cast back to it. ``c`` is overflow-safe: when ``max nu`` is outside a window where
plain float sums are safe, the sums run on ``nu * 2^-k`` with ``2^k`` the binade of ``max nu``
(exact, ``c`` is scale-invariant), so float32 ``nu`` up to 3.4e38 or down to the smallest normal
gives a finite ``c`` (XLA on CPU flushes subnormals to zero); an all-zero leaf gets ``c = 1``;
``c`` is clamped to ``[1/d, 1]``.
``min w`` comes from ``min nu`` (``w`` is increasing in ``nu``) with the same rounding as ``w``.
A NaN or infinity anywhere in a leaf's gradient makes that whole leaf's update NaN (``c`` and
``min w`` are leaf-wide). Zero-size leaves give zero-size updates.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["ScaleBySETAdamState", "scale_by_setadam", "setadam"]


class ScaleBySETAdamState(NamedTuple):
    """State of ``scale_by_setadam``: step count and the unscaled first/second moments."""

    count: jax.Array  # type: ignore[assignment]  # int32 scalar (name fixed by optax style)
    mu: optax.Updates
    nu: optax.Updates


def _check(b1: float, b2: float, eps: float, tau: float) -> None:
    for name, b in (("b1", b1), ("b2", b2)):
        if not 0.0 <= float(b) < 1.0:
            raise ValueError(f"setadam: invalid {name}={b!r}; need 0 <= {name} < 1")
    if not (math.isfinite(float(eps)) and float(eps) > 0.0):
        raise ValueError(f"setadam: invalid eps={eps!r}; need a finite eps > 0")
    if not 0.0 <= float(tau) < 1.0:
        raise ValueError(f"setadam: invalid tau={tau!r}; need 0 <= tau < 1")


def _x64() -> bool:
    config: Any = jax.config
    return bool(config.read("jax_enable_x64"))


def _compute_dtype(dtype: Any) -> Any:
    return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32


def _pow2(e: jax.Array, dtype: Any) -> jax.Array:
    """2^e exactly, for e in the normal exponent range of ``dtype`` (built from the bits)."""
    if jnp.dtype(dtype) == jnp.float64:
        bits = (e.astype(jnp.int64) + 1023) << 52
        return jax.lax.bitcast_convert_type(bits, jnp.float64)
    return jax.lax.bitcast_convert_type((e.astype(jnp.int32) + 127) << 23, jnp.float32)


def _scaled_coefficient(nu: jax.Array, vmax: jax.Array) -> jax.Array:
    """c from ``nu * 2^-k`` with ``max nu = f * 2^k``, ``f`` in [0.5, 1): two exact power-of-two
    factors (each in the normal range), so nothing overflows and c is that of ``nu``."""
    d = nu.size
    _, k = jnp.frexp(vmax)  # k = 0 for 0, inf and NaN
    h1 = (-k) // 2
    scaled = (nu * _pow2(h1, nu.dtype)) * _pow2(-k - h1, nu.dtype)
    s1 = jnp.sum(scaled)
    c = jnp.clip((s1 * s1) / (d * jnp.sum(scaled * scaled)), 1.0 / d, 1.0)
    return jnp.where(vmax == 0, jnp.ones_like(c), c)


def _fast_sums_bounds(d: int, dtype: Any) -> tuple[float, float]:
    """(pre-scale, s2_min) for the one-pass sums of ``u = nu * pre-scale`` over ``d`` entries.

    ``s2 = sum u^2`` finite means nothing overflowed (all terms are >= 0, so no partial sum
    exceeds ``s2``). Each square lost to underflow (XLA flushes subnormals) is below ``2^emin``,
    so the loss is below ``d 2^emin``; ``max u^2 >= s2 / d``, hence ``s2 >= d^2 2^(emin+p+2)``
    keeps the loss under a quarter ulp of ``s2``. The power-of-two pre-scale (exact; ``c`` is
    scale-invariant) centres float32's usable range on the values training produces (about
    ``d * 2^-82`` to ``2^(63 - 32) / sqrt(d)``).
    """
    if jnp.dtype(dtype) == jnp.float64:
        emin, p, s = -1022, 53, 0
    else:
        emin, p, s = -126, 24, 32
    return math.ldexp(1.0, s), float(d) * float(d) * math.ldexp(1.0, emin + p + 2)


def down_scaling_coefficient(nu: jax.Array) -> jax.Array:
    """c = (sum nu)^2 / (d * sum nu^2) of one layer, overflow-safe, 1 for an all-zero layer.

    ``nu`` must be non-empty and in its compute dtype (float32 or float64). The sums are taken
    in one pass each on ``nu`` (and ``nu * 2^32`` for float32); only when they show overflow
    or too much underflow (or ``nu`` is all zero, inf or NaN) does a ``lax.cond`` branch
    recompute them on ``nu`` scaled by the power of two of ``max nu``.
    """
    d = nu.size
    pre, s2_min = _fast_sums_bounds(d, nu.dtype)
    pre_t = jnp.asarray(pre, nu.dtype)
    s1 = jnp.sum(nu)
    s2 = jnp.sum(jnp.square(nu * pre_t))

    def fast() -> jax.Array:
        # (s1 u)^2 <= d s2 (Cauchy-Schwarz), so a finite d * s2 bounds the numerator too; no
        # square root, so a constant layer with exact sums gives exactly 1
        t1 = s1 * pre_t
        return jnp.clip((t1 * t1) / (d * s2), 1.0 / d, 1.0)

    def slow() -> jax.Array:
        return _scaled_coefficient(nu, jnp.max(nu))

    ok = jnp.isfinite(s1) & jnp.isfinite(s2 * d) & (s2 >= s2_min)
    c: jax.Array = jax.lax.cond(ok, fast, slow)
    return c


def _leaf_update(
    mu: jax.Array, nu: jax.Array, bc1: jax.Array, bc2: jax.Array, eps: float, tau: float
) -> jax.Array:
    if nu.size == 0:
        return jnp.zeros_like(mu)
    cd = _compute_dtype(nu.dtype)
    v = nu.astype(cd)
    c = down_scaling_coefficient(v)
    a = (c / bc2.astype(cd)).astype(cd)
    w = jnp.sqrt(v * a + jnp.asarray(eps, cd))
    w_min = jnp.sqrt(jnp.min(v) * a + jnp.asarray(eps, cd))
    wt = w - jnp.asarray(tau, cd) * w_min
    u = (mu.astype(cd) / bc1.astype(cd)) / wt
    return u.astype(mu.dtype)


def scale_by_setadam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, tau: float = 0.5
) -> optax.GradientTransformation:
    r"""Rescale updates by SET-Adam's translated, down-scaled second moment.

    Returns :math:`u_t = \hat\mu_t / (w - \tau \min w)` per leaf (see the module docstring);
    chain with ``optax.scale_by_learning_rate`` to descend.
    """
    _check(b1, b2, eps, tau)
    b1, b2, eps, tau = float(b1), float(b2), float(eps), float(tau)

    def init_fn(params: optax.Params) -> ScaleBySETAdamState:
        mu = jax.tree.map(jnp.zeros_like, params)
        nu = jax.tree.map(jnp.zeros_like, params)
        return ScaleBySETAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update_fn(
        updates: optax.Updates, state: ScaleBySETAdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, ScaleBySETAdamState]:
        del params
        mu = jax.tree.map(lambda g, m: (b1 * m + (1.0 - b1) * g).astype(m.dtype), updates, state.mu)
        nu = jax.tree.map(
            lambda g, v: (b2 * v + (1.0 - b2) * (g * g)).astype(v.dtype), updates, state.nu
        )
        count = optax.safe_int32_increment(state.count)
        t = count.astype(jnp.float32)
        # bias corrections in float32 (float64 when x64 is on and the leaf is float64)
        bc1_32, bc2_32 = 1.0 - jnp.power(jnp.float32(b1), t), 1.0 - jnp.power(jnp.float32(b2), t)
        if _x64():
            t64 = count.astype(jnp.float64)
            bc1_64 = 1.0 - jnp.power(jnp.float64(b1), t64)
            bc2_64 = 1.0 - jnp.power(jnp.float64(b2), t64)

        def leaf(m: jax.Array, v: jax.Array) -> jax.Array:
            if _compute_dtype(v.dtype) == jnp.float64:
                return _leaf_update(m, v, bc1_64, bc2_64, eps, tau)
            return _leaf_update(m, v, bc1_32, bc2_32, eps, tau)

        new_updates = jax.tree.map(leaf, mu, nu)
        return new_updates, ScaleBySETAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def setadam(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    tau: float = 0.5,
    weight_decay: float = 0.0,
    weight_decay_mode: str = "l2",
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""SET-Adam as one optax transformation.

    ``weight_decay_mode="l2"``: :math:`g \leftarrow g + \lambda\theta` before the moments
    (``optax.add_decayed_weights`` ahead of ``scale_by_setadam``). ``"decoupled"``: the decay is
    added after it, so :math:`\theta \leftarrow \theta - \eta(u_t + \lambda\theta)`, i.e.
    :math:`\theta(1 - \eta\lambda)` before the update (as ``optax.adamw``). ``maximize`` flips the
    sign of the gradient first (as torch's ``maximize``), so l2 decay still pulls towards zero.
    ``learning_rate`` may be a float or a schedule (a callable of the step count).
    """
    if weight_decay_mode not in ("l2", "decoupled"):
        raise ValueError(
            f"setadam: invalid weight_decay_mode={weight_decay_mode!r}; need 'l2' or 'decoupled'"
        )
    if not float(weight_decay) >= 0.0:
        raise ValueError(f"setadam: invalid weight_decay={weight_decay!r}; need weight_decay >= 0")
    if not callable(learning_rate) and not float(learning_rate) > 0.0:
        raise ValueError(f"setadam: invalid learning_rate={learning_rate!r}; need > 0")
    parts: list[optax.GradientTransformation] = []
    if maximize:
        parts.append(optax.scale(-1.0))
    if weight_decay and weight_decay_mode == "l2":
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(scale_by_setadam(b1=b1, b2=b2, eps=eps, tau=tau))
    if weight_decay and weight_decay_mode == "decoupled":
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)
