"""The public API: purity, shape checks, layers, trace, state save/load, run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import setadam_ref as R


def _data(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (5,), (0,), (1,), (2, 0, 3)]
    return [rng.normal(size=s) for s in shapes], [rng.normal(size=s) for s in shapes]


CONFIGS = [
    R.SETAdamConfig(),
    R.SETAdamConfig(weight_decay=0.1, weight_decay_mode="decoupled", maximize=True),
    R.AdamConfig(),
    R.AdamConfig(amsgrad=True, weight_decay=0.1),
    R.AdamConfig(amsgrad=True, amsgrad_mode="optax", eps_root=1e-8),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=repr)
def test_inputs_are_never_mutated(cfg: R.Config) -> None:
    params, grads = _data()
    p0, g0 = [a.copy() for a in params], [a.copy() for a in grads]
    st = R.init(params, cfg)
    st1 = R.step(params, grads, st, cfg)[1]
    m1, v1 = [a.copy() for a in st1.m], [a.copy() for a in st1.v]
    R.step(params, grads, st1, cfg, trace=True)
    for a, b in zip(params + grads + list(st1.m) + list(st1.v), p0 + g0 + m1 + v1):
        np.testing.assert_array_equal(a, b)


def test_outputs_are_float64_readonly_and_shaped() -> None:
    params, grads = _data()
    params32 = [a.astype(np.float32) for a in params]
    cfg = R.SETAdamConfig()
    p, st, tr = R.step(params32, [g.astype(np.float16) for g in grads], R.init(params32, cfg), cfg)
    assert tr is None
    for a, b in zip(p, params):
        assert a.dtype == np.float64 and a.shape == b.shape and not a.flags.writeable
    assert st.step == 1 and all(not m.flags.writeable for m in st.m)


def test_zero_size_arrays_do_not_change_and_make_no_layer_stats() -> None:
    params, grads = _data()
    cfg = R.SETAdamConfig()
    p, _, tr = R.step(params, grads, R.init(params, cfg), cfg, trace=True)
    assert isinstance(tr, R.SETAdamTrace)
    assert p[2].shape == (0,) and p[4].shape == (2, 0, 3)
    assert tr.layers[2].size == 0 and tr.layers[2].cos2 == 1.0
    assert tr.layers[3].size == 1 and tr.layers[3].cos2 == 1.0


def test_shape_and_length_errors() -> None:
    params, grads = _data()
    cfg = R.SETAdamConfig()
    st = R.init(params, cfg)
    with pytest.raises(ValueError, match="5 parameter arrays but 4 gradient"):
        R.step(params, grads[:4], st, cfg)
    bad = list(grads)
    bad[1] = np.zeros(6)
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(6,\)"):
        R.step(params, bad, st, cfg)
    with pytest.raises(ValueError, match="the state holds 4 arrays"):
        R.step(params, grads, R.init(params[:4], cfg), cfg)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype int64"):
        R.step(params, [np.zeros((3, 4), dtype=np.int64)] + grads[1:], st, cfg)
    with pytest.raises(TypeError, match="params must be a sequence"):
        R.step(np.zeros(3), grads, st, cfg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amsgrad is True but the state has no vmax"):
        R.step(params, grads, st, R.AdamConfig(amsgrad=True))
    with pytest.raises(ValueError, match="nonfinite must be"):
        R.step(params, grads, st, cfg, nonfinite="warn")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("layers", "msg"),
    [
        (((0, 1), (1, 2, 3, 4)), r"array 1 is in layers\[0\] and layers\[1\]"),
        (((0, 1), (2, 3)), r"arrays \[4\] are in no layer"),
        (((0, 1, 2, 3, 9),), r"names array 9, outside range\(0, 5\)"),
        (((0, 1, 2, 3, 4), ()), r"layers\[1\] is empty"),
        (((0, 1, 2, 3, 4.0),), "is not an array index"),
        ("01234", "must be a sequence of sequences"),
    ],
)
def test_layer_validation(layers: object, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        R.validate_layers(layers, 5)


def test_grouped_layer_uses_joint_statistics() -> None:
    rng = np.random.default_rng(5)
    params = [rng.normal(size=4), rng.normal(size=3)]
    grads = [rng.normal(size=4), 100 * rng.normal(size=3)]
    cfg = R.SETAdamConfig()
    st = R.init(params, cfg)
    tr_sep = R.step(params, grads, st, cfg, trace=True)[2]
    tr_grp = R.step(params, grads, st, cfg, layers=[[0, 1]], trace=True)[2]
    assert isinstance(tr_sep, R.SETAdamTrace) and isinstance(tr_grp, R.SETAdamTrace)
    v_all = np.concatenate([tr_grp.v[0], tr_grp.v[1]])
    assert tr_grp.layers[0].cos2 == pytest.approx(
        v_all.sum() ** 2 / (7 * (v_all**2).sum()), rel=1e-14
    )
    assert tr_grp.layers[0].w_min == pytest.approx(min(tr_grp.w[0].min(), tr_grp.w[1].min()), rel=0)
    assert tr_sep.layers[0].cos2 != tr_grp.layers[0].cos2


def test_trace_stages_are_consistent() -> None:
    params, grads = _data(3)
    cfg = R.SETAdamConfig(lr=0.01, tau=0.7)
    p, _st, tr = R.step(params, grads, R.init(params, cfg), cfg, trace=True)
    assert isinstance(tr, R.SETAdamTrace)
    for i in range(len(params)):
        if params[i].size == 0:
            continue
        c = tr.layers[i].cos2
        np.testing.assert_array_equal(tr.v_scaled[i], c * tr.v[i])
        np.testing.assert_array_equal(
            tr.w[i], np.sqrt(tr.v_scaled[i] / tr.bias_correction2 + cfg.eps)
        )
        assert tr.layers[i].w_min == tr.w[i].min()
        np.testing.assert_array_equal(tr.w_translated[i], tr.w[i] - cfg.tau * tr.w[i].min())
        np.testing.assert_array_equal(tr.update[i], p[i] - params[i])
        np.testing.assert_array_equal(tr.stage("down_translating")[i], tr.w_translated[i])
    with pytest.raises(ValueError, match="unknown stage"):
        tr.stage("denom")
    assert R.STAGES[3:6] == ("down_scaling", "epsilon_embedding", "down_translating")


def test_save_load_round_trip_and_bit_identical_resume(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    params = [rng.normal(size=(4, 3)), rng.normal(size=2)]
    grads = [[rng.normal(size=p.shape) for p in params] for _ in range(10)]
    for cfg in (R.SETAdamConfig(), R.AdamConfig(amsgrad=True)):
        full = R.run(params, grads, cfg)
        path = tmp_path / "state.npz"
        R.save_state(path, full.states[4])
        loaded = R.load_state(path)
        assert loaded.step == 4
        for a, b in zip(loaded.m + loaded.v, full.states[4].m + full.states[4].v):
            assert a.tobytes() == b.tobytes()
        resumed = R.run(full.params[4], grads[4:], cfg, state=loaded)
        for a, b in zip(resumed.params[-1], full.params[-1]):
            assert a.tobytes() == b.tobytes()


def test_load_rejects_other_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    np.savez(
        path,
        schema_version=np.array(99),
        step=np.array(0),
        n_arrays=np.array(0),
        has_vmax=np.array(False),
    )
    with pytest.raises(ValueError, match="schema version 99"):
        R.load_state(path)


def test_run_closed_loop_on_a_quadratic_converges() -> None:
    cfg = R.SETAdamConfig(lr=0.05)
    traj = R.run([np.array([3.0, -2.0, 1.0])], lambda t, p: [2 * p[0]], cfg, steps=400, trace=True)
    assert len(traj.params) == 401 and traj.traces is not None and len(traj.traces) == 400
    assert np.abs(traj.params[-1][0]).max() < 0.05
    with pytest.raises(ValueError, match="steps is required"):
        R.run([np.zeros(1)], lambda t, p: [p[0]], cfg)


def test_reduction_identity_over_100_steps() -> None:
    """SET-Adam with tau = 0 and every coordinate its own layer is Adam with eps_root = eps,
    eps = 0 (docs: algorithms/setadam.md). Both evaluate sqrt(v/bc2 + eps) with c = 1 exactly,
    so they agree to the last bit, not just a few ulps."""
    rng = np.random.default_rng(11)
    params = [rng.normal(size=6)]
    grads = [[rng.normal(size=6) * 10.0 ** rng.uniform(-6, 2)] for _ in range(100)]
    singletons = [[i] for i in range(6)]
    flat = [params[0][i : i + 1] for i in range(6)]
    flat_grads = [[g[0][i : i + 1] for i in range(6)] for g in grads]
    s = R.run(flat, flat_grads, R.SETAdamConfig(tau=0.0, eps=1e-6), layers=singletons)
    a = R.run(params, grads, R.AdamConfig(eps=0.0, eps_root=1e-6))
    got = np.concatenate(s.params[-1])
    np.testing.assert_array_max_ulp(got, a.params[-1][0], maxulp=4)
