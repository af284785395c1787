"""Tests of our optax-style JAX SET-Adam port (conformance/ports/jax_setadam.py), real jax on CPU.

Trajectories are judged by the project's shared oracle (``conformance.tests.oracle``: the reference
run on the same float32 inputs and the tolerance model's budget). JAX runs in its default float32
mode; the float64 leaves are not exercised here so that the test does not flip the process-wide
x64 flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")

from conformance.ports.jax_setadam import (  # noqa: E402
    ScaleBySETAdamState,
    down_scaling_coefficient,
    scale_by_setadam,
    setadam,
)
from conformance.tests.oracle import assert_within_budget  # noqa: E402
from setadam_ref import SETAdamConfig  # noqa: E402

SHAPES = {"w": (3, 4), "b": (5,), "k": (2, 1, 3)}


def np_setadam(
    params: dict[str, np.ndarray],
    grad_steps: Sequence[dict[str, np.ndarray]],
    *,
    lr: float | Callable[[int], float] = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    tau: float = 0.5,
    wd: float = 0.0,
    decoupled: bool = False,
    maximize: bool = False,
) -> dict[str, np.ndarray]:
    """NumPy float64 SET-Adam, one layer per leaf; lr may be a function of the 0-based step.

    Kept on purpose beside the shared oracle: it takes a per-step learning rate (an optax
    schedule), which a reference run with one config cannot express; the schedule test is its
    only user."""
    p = {k: np.array(x, dtype=np.float64) for k, x in params.items()}
    m = {k: np.zeros_like(x) for k, x in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t0, grads in enumerate(grad_steps):
        t = t0 + 1
        eta = lr(t0) if callable(lr) else lr
        for k in p:
            g = np.array(grads[k], dtype=np.float64)
            g = -g if maximize else g
            if wd and not decoupled:
                g = g + wd * p[k]
            if wd and decoupled:
                p[k] = p[k] * (1 - eta * wd)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            if p[k].size == 0:
                continue
            c = 1.0 if not v[k].any() else v[k].sum() ** 2 / (v[k].size * np.sum(v[k] ** 2))
            w = np.sqrt(c * v[k] / (1 - b2**t) + eps)
            p[k] = p[k] - eta / (1 - b1**t) * m[k] / (w - tau * w.min())
    return p


def make_data(
    seed: int = 0, shapes: dict[str, tuple[int, ...]] = SHAPES, steps: int = 3
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = [
        {
            k: (rng.standard_normal(s) * 10.0 ** rng.uniform(-4, -1, size=s)).astype(np.float32)
            for k, s in shapes.items()
        }
        for _ in range(steps)
    ]
    return params, grads


def run_jax(
    tx: optax.GradientTransformation,
    params: dict[str, np.ndarray],
    grad_steps: Sequence[dict[str, np.ndarray]],
    *,
    jit: bool = True,
    trajectory: list[dict[str, np.ndarray]] | None = None,
) -> tuple[dict[str, jax.Array], optax.OptState]:
    """Run ``tx``; the parameters after every step are appended to ``trajectory`` if given."""
    p = {k: jnp.asarray(x) for k, x in params.items()}
    state = tx.init(p)
    update = jax.jit(tx.update) if jit else tx.update
    for grads in grad_steps:
        u, state = update({k: jnp.asarray(g) for k, g in grads.items()}, state, p)
        p = optax.apply_updates(p, u)
        if trajectory is not None:
            trajectory.append({k: np.asarray(x, dtype=np.float64) for k, x in p.items()})
    return p, state


def assert_trajectory_within_budget(
    tx: optax.GradientTransformation,
    cfg: SETAdamConfig,
    params: dict[str, np.ndarray],
    grad_steps: Sequence[dict[str, np.ndarray]],
) -> None:
    """Run ``tx`` jitted in float32 and judge every step against the reference for ``cfg``."""
    traj: list[dict[str, np.ndarray]] = []
    run_jax(tx, params, grad_steps, trajectory=traj)
    keys = list(params)
    assert_within_budget(
        cfg,
        [params[k] for k in keys],
        [[g[k] for k in keys] for g in grad_steps],
        [[p[k] for k in keys] for p in traj],
        "float32",
        label="jax setadam",
    )


def reference_config(lr: float, hyper: dict[str, object]) -> SETAdamConfig:
    """The reference config of ``setadam(lr, **hyper)``."""
    return SETAdamConfig(
        lr=lr,
        betas=(float(hyper.get("b1", 0.9)), float(hyper.get("b2", 0.999))),  # type: ignore[arg-type]
        eps=float(hyper.get("eps", 1e-8)),  # type: ignore[arg-type]
        tau=float(hyper.get("tau", 0.5)),  # type: ignore[arg-type]
        weight_decay=float(hyper.get("weight_decay", 0.0)),  # type: ignore[arg-type]
        weight_decay_mode=str(hyper.get("weight_decay_mode", "l2")),  # type: ignore[arg-type]
        maximize=bool(hyper.get("maximize", False)),
    )


def assert_close_step(
    got: dict[str, jax.Array], exp: dict[str, np.ndarray], p0: dict[str, np.ndarray]
) -> None:
    """Compare the displacement from the start (float32 arithmetic on the step, plus half an ulp
    of |theta| from storing theta in float32)."""
    for k in exp:
        g = np.asarray(got[k], dtype=np.float64)
        assert g.shape == exp[k].shape
        scale = float(np.abs(p0[k]).max()) if p0[k].size else 0.0
        np.testing.assert_allclose(g - p0[k], exp[k] - p0[k], rtol=2e-4, atol=3e-7 * scale)


HYPER = [
    {},
    {"tau": 0.0, "b1": 0.5, "b2": 0.9},
    {"tau": 0.9, "eps": 1e-6, "weight_decay": 0.1},
    {"weight_decay": 0.2, "weight_decay_mode": "decoupled", "maximize": True},
]


@pytest.mark.parametrize("hyper", HYPER)
def test_within_budget_of_the_reference(hyper: dict[str, object]) -> None:
    """Also checks where weight decay sits: l2 before the moments, decoupled after them."""
    params, grads = make_data(1)
    tx = setadam(3e-2, **hyper)  # type: ignore[arg-type]
    assert_trajectory_within_budget(tx, reference_config(3e-2, hyper), params, grads)


def test_state_shape_and_unscaled_nu() -> None:
    params, grads = make_data(2, steps=2)
    _, state = run_jax(scale_by_setadam(b2=0.9), params, grads)
    assert isinstance(state, ScaleBySETAdamState)
    assert int(state.count) == 2 and state.count.dtype == jnp.int32
    nu_exp = 0.9 * 0.1 * grads[0]["w"].astype(np.float64) ** 2 + 0.1 * grads[1]["w"].astype(np.float64) ** 2  # fmt: skip
    np.testing.assert_allclose(np.asarray(state.nu["w"]), nu_exp, rtol=1e-6)


def test_jit_and_eager_agree() -> None:
    """Eager dispatch runs op by op; under jit XLA fuses the element-wise work and may contract
    or reorder float32 arithmetic, so the two agree to a few ulps, not bit for bit."""
    # leaves of one shape: eager dispatch compiles each primitive once per shape
    params, grads = make_data(3, shapes={"a": (4, 5), "b": (4, 5)})
    tx = setadam(1e-2, weight_decay=0.05)
    a, sa = run_jax(tx, params, grads, jit=True)
    b, sb = run_jax(tx, params, grads, jit=False)
    for k in params:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=4e-7, atol=1e-7)
        np.testing.assert_allclose(np.asarray(sa[1].nu[k]), np.asarray(sb[1].nu[k]), rtol=4e-7)


def test_chain_with_schedule_and_clipping() -> None:
    params, grads = make_data(4, steps=4)
    sched = optax.linear_schedule(3e-2, 1e-2, transition_steps=3)
    got, _ = run_jax(setadam(sched), params, grads)
    exp = np_setadam(params, grads, lr=lambda t: float(sched(t)))
    assert_close_step(got, exp, params)
    # composes with optax.chain (clipping in front; huge bound, so a no-op here)
    tx = optax.chain(optax.clip_by_global_norm(1e9), scale_by_setadam(), optax.scale(-3e-2))
    assert_trajectory_within_budget(tx, reference_config(3e-2, {}), params, grads)


def test_empty_leaves_and_zero_layer() -> None:
    shapes = {"e": (0,), "z": (2, 0, 3), "a": (4,), "zero": (3,)}
    params, grads = make_data(6, shapes=shapes)
    for g in grads:
        g["zero"][:] = 0.0
    got, _ = run_jax(setadam(1e-2), params, grads)
    assert got["e"].shape == (0,) and got["z"].shape == (2, 0, 3)
    np.testing.assert_array_equal(np.asarray(got["zero"]), params["zero"])
    assert_trajectory_within_budget(setadam(1e-2), reference_config(1e-2, {}), params, grads)


def test_nan_poisons_its_leaf_only() -> None:
    """Documented behaviour: a NaN or inf gradient entry makes c and min w of its leaf NaN, so the
    whole leaf's update is NaN; other leaves are unaffected."""
    params, grads = make_data(7, steps=2)
    grads[0]["w"][0, 0] = np.nan
    grads[0]["b"][2] = np.inf
    got, _ = run_jax(setadam(1e-2), params, grads)
    assert np.isnan(np.asarray(got["w"])).all() and np.isnan(np.asarray(got["b"])).all()
    assert np.isfinite(np.asarray(got["k"])).all()


_coef = jax.jit(down_scaling_coefficient)


def _cos2(v: np.ndarray) -> float:
    v = v.astype(np.float64).ravel()
    s = v / v.max()
    return float(s.sum() ** 2 / (v.size * np.sum(s * s)))


@pytest.mark.parametrize("magnitude", [3e38, 1e38, 3e-37, 1e-30, 1.0])
def test_down_scaling_coefficient_overflow_safe(magnitude: float) -> None:
    """v from 1.5e-38 (just above float32's smallest normal) to 3e38: c stays finite and right.
    (XLA on CPU flushes subnormals to zero: a leaf of subnormal v counts as all-zero, c = 1;
    harmless, since c v <= 1.2e-38 is far below eps.)"""
    rng = np.random.default_rng(8)
    v = (magnitude * rng.uniform(0.05, 1.0, size=(6, 7))).astype(np.float32)
    v[0, 0] = 0.0
    c = float(_coef(jnp.asarray(v)))
    assert math.isfinite(c)
    assert c == pytest.approx(_cos2(v), rel=2e-6)
    assert 1 / v.size <= c <= 1.0
    # float32 explicitly: the harness's JAX adapter turns on x64 for the whole process, and the
    # default dtype would then be float64, where 8 x 1e-39 is no longer summed exactly.
    f32 = jnp.float32
    assert float(_coef(jnp.zeros(8, f32))) == 1.0
    assert float(_coef(jnp.full(8, 7.0, f32))) == 1.0
    assert float(_coef(jnp.full(8, 1e-39, f32))) == 1.0
    one_hot = jnp.zeros(8, f32).at[3].set(2.0)
    assert float(_coef(one_hot)) == pytest.approx(1 / 8, rel=1e-7)


def test_huge_second_moment_gives_finite_update() -> None:
    params = {"w": np.ones((3, 3), np.float32)}
    tx = scale_by_setadam()
    state = tx.init(params)
    nu = {"w": jnp.asarray(np.linspace(1e37, 3e38, 9, dtype=np.float32).reshape(3, 3))}
    state = state._replace(count=jnp.asarray(100_000, jnp.int32), nu=nu)
    u, _ = jax.jit(tx.update)({"w": jnp.zeros((3, 3))}, state)
    assert np.isfinite(np.asarray(u["w"])).all()


def test_low_precision_leaves_keep_dtype() -> None:
    params = {"h": jnp.ones((4, 4), jnp.bfloat16), "f": jnp.ones((3,), jnp.float16)}
    grads = {"h": jnp.full((4, 4), 0.5, jnp.bfloat16), "f": jnp.zeros((3,), jnp.float16)}
    tx = setadam(1e-2)
    state = tx.init(params)
    u, state = jax.jit(tx.update)(grads, state, params)
    assert u["h"].dtype == jnp.bfloat16 and u["f"].dtype == jnp.float16
    assert state[-2].mu["h"].dtype == jnp.bfloat16  # type: ignore[index]
    assert np.isfinite(np.asarray(u["h"], np.float32)).all()
    # v = 0 with eps = 1e-8 (not representable in float16): computed in float32, update 0
    np.testing.assert_array_equal(np.asarray(u["f"], np.float32), 0.0)


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: scale_by_setadam(b1=1.0), "b1"),
        (lambda: scale_by_setadam(b2=-0.1), "b2"),
        (lambda: scale_by_setadam(eps=0.0), "eps"),
        (lambda: scale_by_setadam(tau=1.0), "tau"),
        (lambda: setadam(1e-3, weight_decay=-1.0), "weight_decay"),
        (lambda: setadam(1e-3, weight_decay_mode="adamw"), "weight_decay_mode"),
        (lambda: setadam(0.0), "learning_rate"),
    ],
)
def test_validation(factory: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        factory()


def test_fast_sums_agree_with_scaled_fallback() -> None:
    """The one-pass sums (taken when they are safe) and the max-scaled fallback give the same c
    to float32 rounding."""
    from conformance.ports.jax_setadam import _scaled_coefficient

    rng = np.random.default_rng(9)
    for mag in (1e-12, 1e-6, 1.0, 1e4):
        v = jnp.asarray((mag * rng.uniform(0.0, 1.0, size=(50, 40)) ** 3).astype(np.float32))
        fast = float(_coef(v))
        slow = float(jax.jit(_scaled_coefficient)(v, jnp.max(v)))
        assert fast == pytest.approx(slow, rel=3e-6)
        assert fast == pytest.approx(_cos2(np.asarray(v)), rel=3e-6)
