"""Properties of the whole step: equivariance, layer independence, the reduction to Adam, the
update bound, and bit-exact save/resume.

Proofs: docs/src/theory/invariants.md (sections named in each docstring).
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import setadam_ref as sr
from property_tests import strategies as S
from property_tests._exact import U, gamma
from property_tests.profiles import examples


def _small(min_arrays: int = 1) -> st.SearchStrategy[S.Structure]:
    return S.structures(min_arrays=min_arrays, max_arrays=5, max_size=1_000)


def _random_state(
    data: st.DataObject, structure: S.Structure, config: sr.Config, params: tuple[np.ndarray, ...]
) -> sr.State:
    """A reachable state: init, then 0-3 steps of drawn gradients."""
    k = data.draw(st.integers(0, 3), label="warmup_steps")
    state = sr.init(params, config)
    for j in range(k):
        g = data.draw(S.gradients(structure), label=f"warmup_grads[{j}]")
        params, state, _ = sr.step(params, g, state, config, layers=structure.layers)
    return state


def _all_equal(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


@given(structure=_small(), config=S.setadam_configs(), data=st.data())
def test_permutation_equivariance(
    structure: S.Structure, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """Permuting the coordinates of a layer (params, gradients, m, v together) permutes the step's
    output. m, v are bit-exact (element-wise); the parameters agree within the rounding of c, whose
    sums depend on the summation order: |dtheta| <= |U| 2 gamma_{3d+4} (1+tau)/(1-tau) + 2u|theta|.

    Proof: docs/src/theory/invariants.md#step-permutation
    """
    params = data.draw(S.parameters(structure), label="theta")
    state = _random_state(data, structure, config, params)
    grads = data.draw(S.gradients(structure), label="grads")
    perms = [
        np.array(data.draw(st.permutations(range(max(1, int(np.prod(s))))), label=f"perm[{i}]"))
        for i, s in enumerate(structure.shapes)
    ]

    def permute(arrs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(
            np.ravel(a)[p].reshape(a.shape) if a.size else a.copy()
            for a, p in zip(arrs, perms, strict=True)
        )

    p1, s1, tr = sr.step(params, grads, state, config, layers=structure.layers, trace=True)
    pstate = sr.State(state.step, permute(state.m), permute(state.v), None)
    p2, s2, _ = sr.step(permute(params), permute(grads), pstate, config, layers=structure.layers)
    assert _all_equal(s2.m, permute(s1.m))
    assert _all_equal(s2.v, permute(s1.v))
    assert isinstance(tr, sr.SETAdamTrace)
    d_of = {i: st_.size for st_ in tr.layers for i in st_.arrays}
    expected = permute(p1)
    step_mag = permute(tuple(np.abs(a * m) for a, m in zip(tr.stepsize, tr.m, strict=True)))
    for i, (x, y) in enumerate(zip(p2, expected, strict=True)):
        tol = step_mag[i] * (2 * gamma(3 * d_of[i] + 4) * (1 + config.tau) / (1 - config.tau))
        tol = tol * 1.01 + 2 * U * np.abs(y)
        assert np.all(np.abs(x - y) <= tol)


@given(structure=_small(2), config=S.setadam_configs(), data=st.data())
def test_layer_independence(
    structure: S.Structure, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """A layer's update (parameters, m, v) depends on its own gradients only: changing the
    gradients of every other layer leaves it bit for bit unchanged.

    Proof: docs/src/theory/invariants.md#layer-independence
    """
    params = data.draw(S.parameters(structure), label="theta")
    state = _random_state(data, structure, config, params)
    grads = data.draw(S.gradients(structure), label="grads")
    other = data.draw(S.gradients(structure), label="other_grads")
    layers = structure.layer_list()
    keep = data.draw(st.sampled_from(layers), label="kept_layer")
    mixed = tuple(grads[i] if i in keep else other[i] for i in range(len(grads)))
    p1, s1, _ = sr.step(params, grads, state, config, layers=structure.layers)
    p2, s2, _ = sr.step(params, mixed, state, config, layers=structure.layers)
    for i in keep:
        assert np.array_equal(p1[i], p2[i])
        assert np.array_equal(s1.m[i], s2.m[i])
        assert np.array_equal(s1.v[i], s2.v[i])


@given(structure=_small(), config=S.setadam_configs(), data=st.data())
def test_layer_order_invariance(
    structure: S.Structure, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """Listing the layers in another order, and the arrays of a layer in another order, changes
    nothing, bit for bit (per-array partial sums are combined with a correctly rounded sum).

    Proof: docs/src/theory/invariants.md#layer-order
    """
    params = data.draw(S.parameters(structure), label="theta")
    state = _random_state(data, structure, config, params)
    grads = data.draw(S.gradients(structure), label="grads")
    layers = list(structure.layer_list())
    order = data.draw(st.permutations(range(len(layers))), label="layer_order")
    shuffled = tuple(
        tuple(data.draw(st.permutations(layers[k]), label=f"arrays_of_layer[{k}]")) for k in order
    )
    p1, s1, _ = sr.step(params, grads, state, config, layers=tuple(layers))
    p2, s2, _ = sr.step(params, grads, state, config, layers=shuffled)
    assert _all_equal(p1, p2)
    assert _all_equal(s1.v, s2.v)


@given(structure=_small(), config=S.setadam_configs(), data=st.data())
def test_sign_equivariance(
    structure: S.Structure, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """(theta, g, m) -> (-theta, -g, -m) with v fixed maps the step's output to its negative, bit
    for bit (round-to-nearest is symmetric; v, c, w depend on g^2 only).

    Proof: docs/src/theory/invariants.md#step-sign
    """
    params = data.draw(S.parameters(structure), label="theta")
    state = _random_state(data, structure, config, params)
    grads = data.draw(S.gradients(structure), label="grads")

    def neg(arrs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(-a for a in arrs)

    p1, s1, _ = sr.step(params, grads, state, config, layers=structure.layers)
    nstate = sr.State(state.step, neg(state.m), state.v, None)
    p2, s2, _ = sr.step(neg(params), neg(grads), nstate, config, layers=structure.layers)
    assert _all_equal(p2, neg(p1))
    assert _all_equal(s2.m, neg(s1.m))
    assert _all_equal(s2.v, s1.v)


def _unit_betas() -> st.SearchStrategy[float]:
    # betas without tiny positive values (b * m would underflow and break exact scaling)
    return st.one_of(
        st.just(0.0),
        st.floats(1e-6, 1.0, exclude_max=True),
        S.betas().filter(lambda b: b == 0.0 or b >= 1e-6),
    )


@given(
    structure=_small(),
    lr=S.learning_rates(),
    beta1=_unit_betas(),
    beta2=_unit_betas(),
    eps=S.epsilons(-30.0, 0.0),
    tau=S.taus(),
    k=st.integers(-30, 30),
    data=st.data(),
)
def test_power_of_two_scaling_invariance(
    structure: S.Structure,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    tau: float,
    k: int,
    data: st.DataObject,
) -> None:
    """Scaling the gradients (and m) by s = 2^k, v by 4^k and eps by 4^k leaves the update
    unchanged, bit for bit (no weight decay; magnitudes kept clear of under/overflow): SET-Adam's
    update is homogeneous of degree 0 in (g, sqrt(v), sqrt(eps)).

    Proof: docs/src/theory/invariants.md#step-scaling
    """
    cfg = sr.SETAdamConfig(lr=lr, betas=(beta1, beta2), eps=eps, tau=tau)
    cfg_s = sr.SETAdamConfig(lr=lr, betas=(beta1, beta2), eps=eps * 4.0**k, tau=tau)
    params = data.draw(S.parameters(structure), label="theta")
    grads = data.draw(S.gradients(structure, min_exp=-60, max_exp=60), label="grads")
    state = sr.init(params, cfg)
    if data.draw(st.booleans(), label="warm_state"):
        warm = data.draw(S.gradients(structure, min_exp=-60, max_exp=60), label="warm_grads")
        _, state, _ = sr.step(params, warm, state, cfg, layers=structure.layers)
    s = 2.0**k
    sstate = sr.State(
        state.step, tuple(m * s for m in state.m), tuple(v * s * s for v in state.v), None
    )
    p1, s1, _ = sr.step(params, grads, state, cfg, layers=structure.layers)
    p2, s2, _ = sr.step(params, tuple(g * s for g in grads), sstate, cfg_s, layers=structure.layers)
    assert _all_equal(p2, p1)
    assert _all_equal(s2.m, tuple(m * s for m in s1.m))
    assert _all_equal(s2.v, tuple(v * s * s for v in s1.v))


@given(
    n_arrays=st.integers(1, 8),
    scalar=st.booleans(),
    config=S.setadam_configs(),
    n_steps=st.integers(1, 6),
    data=st.data(),
)
def test_reduction_to_adam(
    n_arrays: int, scalar: bool, config: sr.SETAdamConfig, n_steps: int, data: st.DataObject
) -> None:
    """With tau = 0 and every coordinate its own layer, SET-Adam is Adam with eps inside the square
    root (eps_root = eps, eps = 0): whole trajectories agree bit for bit (c = 1 exactly for a
    one-entry layer, and both evaluate sqrt(v/(1-beta2^t) + eps) and m/denom * lr/(1-beta1^t)).

    Proof: docs/src/theory/invariants.md#adam-reduction
    """
    set_cfg = sr.SETAdamConfig(
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        tau=0.0,
        weight_decay=config.weight_decay,
        weight_decay_mode=config.weight_decay_mode,
        maximize=config.maximize,
    )
    adam_cfg = sr.AdamConfig(
        lr=config.lr,
        betas=config.betas,
        eps=0.0,
        eps_root=config.eps,
        weight_decay=config.weight_decay,
        weight_decay_mode=config.weight_decay_mode,
        maximize=config.maximize,
    )
    structure = S.Structure(tuple(() if scalar else (1,) for _ in range(n_arrays)), None)
    params = data.draw(S.parameters(structure), label="theta0")
    stream = data.draw(S.gradient_streams(structure, n_steps), label="grads")
    a = sr.run(params, stream, set_cfg)
    b = sr.run(params, stream, adam_cfg)
    for pa, pb in zip(a.params, b.params, strict=True):
        assert _all_equal(pa, pb)
    assert _all_equal(a.states[-1].v, b.states[-1].v)


def _corollary_3_adam(config: sr.SETAdamConfig) -> sr.AdamConfig:
    """Corollary 3's Adam for singleton layers: eps inside the root, lr / (1 - tau), and with
    decoupled decay lambda (1 - tau), so that the decay factor 1 - lr lambda is unchanged."""
    decay = config.weight_decay
    if config.weight_decay_mode == "decoupled":
        decay = config.weight_decay * (1 - config.tau)
    return sr.AdamConfig(
        lr=config.lr / (1 - config.tau),
        betas=config.betas,
        eps=0.0,
        eps_root=config.eps,
        weight_decay=decay,
        weight_decay_mode=config.weight_decay_mode,
        maximize=config.maximize,
    )


def _check_corollary_3(
    config: sr.SETAdamConfig,
    params: tuple[np.ndarray, ...],
    state: sr.State,
    grads: tuple[np.ndarray, ...],
) -> None:
    adam = _corollary_3_adam(config)
    p_s, _, tr = sr.step(params, grads, state, config, trace=True)
    p_a, _, tra = sr.step(params, grads, state, adam, trace=True)
    assert isinstance(tr, sr.SETAdamTrace) and isinstance(tra, sr.AdamTrace)
    lam = config.weight_decay if config.weight_decay_mode == "decoupled" else 0.0
    lr_lam = config.lr * lam
    # below the normal range every rounding adds up to 2^-1075 absolute instead (here 2^-1074,
    # the smallest float64), and m/denom is multiplied by s = lr/b1 afterwards: the two sides'
    # quotients m/wt and m/w can be subnormal with very different relative precision
    s_max = adam.lr / tr.bias_correction1
    tiny = 2.0**-1074 * (2 * s_max + 8)
    for th, ps, pa, us in zip(params, p_s, p_a, tr.update, strict=True):
        adaptive = np.abs(us + lr_lam * th)  # |U|, the update without the decay term
        tol = (gamma(7) + 2 * U / (1 - config.tau)) * adaptive * (1 + gamma(7))
        tol += np.abs(th) * (lr_lam * gamma(5) + 4 * U * abs(1 - lr_lam))
        tol += U * (np.abs(ps) + np.abs(pa)) + tiny
        assert np.all(np.abs(ps - pa) <= tol)


@given(
    n_arrays=st.integers(1, 8),
    scalar=st.booleans(),
    config=S.setadam_configs(),
    data=st.data(),
)
def test_corollary_3_translation_is_a_learning_rate(
    n_arrays: int, scalar: bool, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """With every coordinate its own layer and any tau, one SET-Adam step equals one step of Adam
    with eps_root = eps, eps = 0, learning rate lr/(1 - tau) and, for decoupled decay, lambda
    (1 - tau): wt = (1 - tau) w. Not bitwise: w - fl(tau w) is (1 - tau) w within u/(1 - tau),
    and lr/(1 - tau), lambda (1 - tau) are rounded. Bound: the updates U differ by at most
    (gamma_7 + 2u/(1 - tau)) |U|, the decayed parameters by |theta| (lr lambda gamma_5
    + 4u (1 - lr lambda)), each side rounds theta_t once, and subnormal intermediates add their
    absolute term amplified by lr/(1 - tau).

    Proof: docs/src/algorithms/setadam.md (Corollary 3)
    """
    structure = S.Structure(tuple(() if scalar else (1,) for _ in range(n_arrays)), None)
    params = data.draw(S.parameters(structure), label="theta0")
    state = _random_state(data, structure, config, params)
    grads = data.draw(S.gradients(structure), label="grads")
    _check_corollary_3(config, params, state, grads)


def test_corollary_3_with_subnormal_moments() -> None:
    """Found by the thorough profile: beta1 = 5e-324 makes m subnormal, and Adam's m/w
    (1.5e-323, three subnormal units) times lr/(1 - tau) = 100 differs from SET-Adam's m/wt by 16
    units; the tolerance needs the underflow term, amplified by lr/(1 - tau).

    Proof: docs/src/algorithms/setadam.md (Corollary 3)
    """
    cfg = sr.SETAdamConfig(lr=1.0, betas=(5e-324, 0.0), eps=0.1, tau=0.99)
    theta = (np.array([-1.0]), np.array([0.0]))
    _, state, _ = sr.step(theta, (np.array([-1.0]), np.array([-1.0])), sr.init(theta, cfg), cfg)
    _check_corollary_3(cfg, theta, state, (np.array([-1.0]), np.array([0.0])))


def test_corollary_3_needs_the_decay_scaled_by_one_minus_tau() -> None:
    """Issue 16's counterexample to the unqualified Corollary 3: lr = 0.1, tau = 0.5, decoupled
    lambda = 0.5, theta = 2, g = 0.3: SET-Adam gives 1.7, Adam with lr/(1 - tau) = 0.2 and the
    same lambda gives 1.6 (decay 1 - 0.2 * 0.5 instead of 1 - 0.1 * 0.5); with lambda (1 - tau)
    Adam gives 1.7 too.

    Proof: docs/src/algorithms/setadam.md (Corollary 3)
    """
    cfg = sr.SETAdamConfig(lr=0.1, tau=0.5, weight_decay=0.5, weight_decay_mode="decoupled")
    theta, g = (np.array([2.0]),), (np.array([0.3]),)
    p_s, _, _ = sr.step(theta, g, sr.init(theta, cfg), cfg)
    wrong = sr.AdamConfig(
        lr=0.2, eps=0.0, eps_root=cfg.eps, weight_decay=0.5, weight_decay_mode="decoupled"
    )
    p_w, _, _ = sr.step(theta, g, sr.init(theta, wrong), wrong)
    right = _corollary_3_adam(cfg)
    p_r, _, _ = sr.step(theta, g, sr.init(theta, right), right)
    assert abs(p_s[0][0] - 1.7) < 1e-6 and abs(p_w[0][0] - 1.6) < 1e-6
    assert abs(p_r[0][0] - p_s[0][0]) < 1e-15


@given(structure=_small(), config=S.setadam_configs(), data=st.data())
def test_update_bound(
    structure: S.Structure, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """|dtheta_i| <= lr/(1-beta1^t) |m_i| / ((1-tau) sqrt(eps)) for the adaptive part of the update
    (checked from theta = 0, where the decoupled decay term vanishes), up to 6u/(1-tau).

    Proof: docs/src/theory/invariants.md#update-bound
    """
    params = data.draw(S.parameters(structure), label="theta")
    state = _random_state(data, structure, config, params)
    grads = data.draw(S.gradients(structure), label="grads")
    zeros = tuple(np.zeros_like(p) for p in params)
    p1, s1, tr = sr.step(zeros, grads, state, config, layers=structure.layers, trace=True)
    assert isinstance(tr, sr.SETAdamTrace)
    bound_a = config.lr / tr.bias_correction1 / ((1 - config.tau) * math.sqrt(config.eps))
    slack = 1 + 6 * U / (1 - config.tau)
    for p, m, a in zip(p1, s1.m, tr.stepsize, strict=True):
        assert np.all(a <= bound_a * slack)
        assert np.all(np.abs(p) <= bound_a * np.abs(m) * slack)


def test_update_bound_is_attained_exactly_where_v_is_zero() -> None:
    """At a coordinate with v_i = 0 (here g = 0 after a momentum step) w_i = sqrt(eps) = w_min and
    wt_i = (1 - tau) sqrt(eps): the update bound holds with equality, up to the rounding of the
    step (6u/(1 - tau)), not only in a limit.

    Proof: docs/src/theory/invariants.md#update-bound
    """
    cfg = sr.SETAdamConfig(lr=0.1, betas=(0.9, 0.999), eps=1e-6, tau=0.9)
    theta = (np.zeros(3),)
    state = sr.State(step=4, m=(np.array([1e-3, -2e-3, 5e-4]),), v=(np.array([0.0, 1e-4, 0.0]),))
    g = (np.array([0.0, 1e-2, 0.0]),)
    p, s, tr = sr.step(theta, g, state, cfg, trace=True)
    assert isinstance(tr, sr.SETAdamTrace) and s.v[0][0] == 0.0 and s.v[0][2] == 0.0
    bound = cfg.lr / tr.bias_correction1 * np.abs(s.m[0]) / ((1 - cfg.tau) * math.sqrt(cfg.eps))
    ratio = np.abs(p[0]) / bound
    slack = 6 * U / (1 - cfg.tau)
    assert abs(ratio[0] - 1) <= slack and abs(ratio[2] - 1) <= slack  # equality where v = 0
    assert ratio[1] < 0.5  # strictly below where v is large against eps


def test_update_bound_is_attained() -> None:
    """The update bound is tight: with |g| tiny against eps, |dtheta| / bound = 1 - O(v/eps).

    Proof: docs/src/theory/invariants.md#update-bound
    """
    cfg = sr.SETAdamConfig(lr=0.1, betas=(0.9, 0.999), eps=1.0, tau=0.9)
    g = (np.array([1e-100, 2e-100]),)
    p, s, tr = sr.step((np.zeros(2),), g, sr.init((np.zeros(2),), cfg), cfg, trace=True)
    assert isinstance(tr, sr.SETAdamTrace)
    bound = cfg.lr / tr.bias_correction1 * np.abs(s.m[0]) / ((1 - cfg.tau) * math.sqrt(cfg.eps))
    assert np.allclose(np.abs(p[0]) / bound, 1.0, rtol=1e-12, atol=0)


def _adam_configs_with_amsgrad() -> st.SearchStrategy[sr.AdamConfig]:
    return st.builds(
        sr.AdamConfig,
        lr=S.learning_rates(),
        betas=st.tuples(S.betas(), S.betas()),
        eps=S.epsilons(),
        amsgrad=st.booleans(),
        amsgrad_mode=st.sampled_from(["torch", "optax"]),
        weight_decay=st.one_of(st.just(0.0), st.floats(0.0, 1.0)),
        weight_decay_mode=st.sampled_from(["l2", "decoupled"]),
    )


@given(
    structure=S.structures(max_arrays=4, max_size=500),
    config=st.one_of(S.setadam_configs(), _adam_configs_with_amsgrad()),
    n_steps=st.integers(2, 6),
    data=st.data(),
)
def test_save_resume_bit_exact(
    structure: S.Structure, config: sr.Config, n_steps: int, data: st.DataObject
) -> None:
    """Saving the state after k steps, loading it and running the remaining steps reproduces the
    uninterrupted trajectory bit for bit (the state is the whole memory of the optimizer and the
    npz round trip is exact).

    Proof: docs/src/theory/invariants.md#save-resume
    """
    params = data.draw(S.parameters(structure), label="theta0")
    stream = data.draw(S.gradient_streams(structure, n_steps), label="grads")
    k = data.draw(st.integers(1, n_steps - 1), label="split")
    whole = sr.run(params, stream, config, layers=structure.layers)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "state.npz")
        sr.save_state(path, whole.states[k])
        loaded = sr.load_state(path)
    assert loaded.step == whole.states[k].step == k
    assert _all_equal(loaded.m, whole.states[k].m)
    assert _all_equal(loaded.v, whole.states[k].v)
    assert (loaded.vmax is None) == (whole.states[k].vmax is None)
    saved_vmax = whole.states[k].vmax
    if loaded.vmax is not None and saved_vmax is not None:
        assert _all_equal(loaded.vmax, saved_vmax)
    rest = sr.run(whole.params[k], stream[k:], config, layers=structure.layers, state=loaded)
    for j in range(n_steps - k + 1):
        assert _all_equal(rest.params[j], whole.params[k + j])
        assert _all_equal(rest.states[j].m, whole.states[k + j].m)
        assert _all_equal(rest.states[j].v, whole.states[k + j].v)


@settings(max_examples=examples(3))
@given(
    sizes=st.lists(st.integers(45_000, 70_000), min_size=3, max_size=3),  # >= 8 blocks: threads
    config=S.setadam_configs(),
    seed=st.integers(0, 2**32 - 1),
)
def test_block_split_and_thread_count_do_not_change_the_step(
    sizes: list[int], config: sr.SETAdamConfig, seed: int
) -> None:
    """Arrays larger than one evaluation block (the reference splits them and combines per-block
    sums) give a layer statistic c within gamma_{3d+4} of the exact value and min w = min of w;
    and the result is bit for bit the same with one thread or two (SETADAM_REF_THREADS).

    Proof: docs/src/theory/invariants.md#determinism and
    docs/src/numerics/reference-error.md#per-step-bounds
    """
    rng = np.random.default_rng(seed)
    params = tuple(rng.normal(size=n) for n in sizes)
    grads = tuple(rng.normal(size=n) * 10.0 ** rng.uniform(-20, 20, size=n) for n in sizes)
    layers = (tuple(range(len(sizes))),)  # one layer spanning all arrays
    state = sr.init(params, config)
    old = os.environ.get("SETADAM_REF_THREADS")
    try:
        os.environ["SETADAM_REF_THREADS"] = "1"
        p1, s1, tr = sr.step(params, grads, state, config, layers=layers, trace=True)
        os.environ["SETADAM_REF_THREADS"] = "2"
        p2, s2, _ = sr.step(params, grads, state, config, layers=layers)
    finally:
        if old is None:
            os.environ.pop("SETADAM_REF_THREADS", None)
        else:
            os.environ["SETADAM_REF_THREADS"] = old
    assert _all_equal(p1, p2) and _all_equal(s1.v, s2.v) and _all_equal(s1.m, s2.m)
    assert isinstance(tr, sr.SETAdamTrace)
    (stats,) = tr.layers
    v = np.concatenate(tr.v)
    assert stats.size == v.size and stats.v_min == v.min()
    assert stats.w_min == np.concatenate(tr.w).min()
    # near-exact c: correctly rounded sums (fsum) of v and of the (once rounded) squares
    sum1, sum2 = math.fsum(v), math.fsum(v * v)
    near = sum1 * sum1 / (v.size * sum2)
    assert abs(stats.cos2 - near) <= (gamma(3 * v.size + 4) + gamma(6)) * near


@given(structure=_small(), config=S.setadam_configs(), data=st.data())
def test_input_dtype_is_cast_to_float64(
    structure: S.Structure, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """Inputs of any float dtype are computed in float64: a step on float32/float16 arrays equals,
    bit for bit, the step on the same values cast to float64 first, and returns float64 arrays.

    Proof: docs/src/theory/invariants.md#input-dtype
    """
    dtype = data.draw(st.sampled_from([np.float32, np.float16]), label="dtype")
    params = tuple(
        a.astype(dtype)
        for a in data.draw(S.parameters(structure, min_exp=-3, max_exp=3), label="theta")
    )
    grads = tuple(
        a.astype(dtype)
        for a in data.draw(S.gradients(structure, min_exp=-3, max_exp=3), label="grads")
    )
    state = sr.init([p.astype(np.float64) for p in params], config)
    p1, s1, _ = sr.step(params, grads, state, config, layers=structure.layers)
    p64 = tuple(p.astype(np.float64) for p in params)
    g64 = tuple(g.astype(np.float64) for g in grads)
    p2, s2, _ = sr.step(p64, g64, state, config, layers=structure.layers)
    assert all(p.dtype == np.float64 for p in p1)
    assert _all_equal(p1, p2) and _all_equal(s1.v, s2.v)
