"""The reference against exact rational arithmetic for 1-3 steps on small layers.

Tolerance: each float64 step performs O(10) correctly rounded operations per coordinate, each
with relative error <= u = 2**-53; the layer sums add log2(d) more. Errors of one step relative
to the step's magnitude are therefore below ~30u; the parameter itself is rounded once per step.
We allow 64u of (|theta| + sum of |update| so far), a bound a wrong formula misses by orders of
magnitude (the mutation checks at the bottom show that).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import setadam_ref as R
from setadam_ref.tests.exact import adam_exact, setadam_exact

U = 2.0**-53


def _problem(
    seed: int, sizes: tuple[int, ...], steps: int
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=n) for n in sizes]
    grads = [[rng.normal(size=n) * 10.0 ** rng.uniform(-4, 1) for n in sizes] for _ in range(steps)]
    return params, grads


def _fr(arrays: list[np.ndarray]) -> list[list[Fraction]]:
    return [[Fraction(float(x)) for x in a] for a in arrays]


def _assert_close(traj: R.Trajectory, exact: list[list[list[Fraction]]]) -> float:
    worst = 0.0
    scale = [np.abs(a) for a in traj.params[0]]
    for t, ex in enumerate(exact, start=1):
        for k, (got, want) in enumerate(zip(traj.params[t], ex)):
            scale[k] = scale[k] + np.abs(traj.params[t][k] - traj.params[t - 1][k])
            for i, w in enumerate(want):
                err = abs(Fraction(float(got[i])) - w)
                bound = Fraction(64 * U) * Fraction(float(scale[k][i] + abs(got[i])))
                assert err <= bound, (
                    f"step {t} array {k} coord {i}: err {float(err):.3e} > {float(bound):.3e}"
                )
                worst = max(worst, float(err / bound) if bound else 0.0)
    return worst


ADAM_CASES = {
    "torch-adam": dict(cfg=R.AdamConfig(lr=0.01), ex={}),
    "torch-adamw": dict(
        cfg=R.AdamConfig(lr=0.01, weight_decay=0.1, weight_decay_mode="decoupled"),
        ex=dict(wd=0.1, decoupled=True),
    ),
    "l2": dict(cfg=R.AdamConfig(lr=0.01, weight_decay=0.3), ex=dict(wd=0.3)),
    "optax-eps-root": dict(
        cfg=R.AdamConfig(lr=0.01, eps=1e-6, eps_root=1e-4), ex=dict(eps=1e-6, eps_root=1e-4)
    ),
    "amsgrad-torch": dict(cfg=R.AdamConfig(lr=0.01, amsgrad=True), ex=dict(amsgrad="torch")),
    "amsgrad-optax": dict(
        cfg=R.AdamConfig(lr=0.01, amsgrad=True, amsgrad_mode="optax"), ex=dict(amsgrad="optax")
    ),
    "tf": dict(cfg=R.AdamConfig(lr=0.01, eps=1e-3, eps_mode="tf"), ex=dict(eps=1e-3, tf=True)),
    "tf-keras-adamw-amsgrad": dict(
        cfg=R.AdamConfig(
            lr=0.01,
            eps=1e-7,
            weight_decay=0.1,
            weight_decay_mode="decoupled",
            amsgrad=True,
            eps_mode="tf",
        ),
        ex=dict(eps=1e-7, wd=0.1, decoupled=True, amsgrad="torch", tf=True),
    ),
    "tf-eps-root-l2": dict(
        cfg=R.AdamConfig(lr=0.01, eps=1e-6, eps_root=1e-4, weight_decay=0.3, eps_mode="tf"),
        ex=dict(eps=1e-6, eps_root=1e-4, wd=0.3, tf=True),
    ),
    "maximize-l2": dict(
        cfg=R.AdamConfig(lr=0.01, maximize=True, weight_decay=0.2), ex=dict(maximize=True, wd=0.2)
    ),
}


@pytest.mark.parametrize("name", sorted(ADAM_CASES))
def test_adam_matches_exact_arithmetic(name: str) -> None:
    case = ADAM_CASES[name]
    cfg: R.AdamConfig = case["cfg"]  # type: ignore[assignment]
    params, grads = _problem(1, (3, 1, 4), 3)
    kw = dict(lr=cfg.lr, b1=cfg.betas[0], b2=cfg.betas[1], eps=cfg.eps)
    kw.update(case["ex"])  # type: ignore[call-overload]
    exact = adam_exact(_fr(params), [_fr(g) for g in grads], **kw)  # type: ignore[arg-type]
    _assert_close(R.run(params, grads, cfg), exact)


SET_CASES = {
    "default": (R.SETAdamConfig(lr=0.01), {}, None),
    "tau0.9-large-eps": (R.SETAdamConfig(lr=0.01, tau=0.9, eps=1e-2), {}, None),
    "grouped-layers": (R.SETAdamConfig(lr=0.01), {}, ((0, 2), (1,))),
    "l2": (R.SETAdamConfig(lr=0.01, weight_decay=0.3), dict(wd=0.3), None),
    "decoupled-maximize": (
        R.SETAdamConfig(lr=0.01, weight_decay=0.1, weight_decay_mode="decoupled", maximize=True),
        dict(wd=0.1, decoupled=True, maximize=True),
        None,
    ),
    "beta-corners": (R.SETAdamConfig(lr=0.01, betas=(0.0, 0.9999)), {}, None),
}


@pytest.mark.parametrize("name", sorted(SET_CASES))
def test_setadam_matches_exact_arithmetic(name: str) -> None:
    cfg, extra, layers = SET_CASES[name]
    params, grads = _problem(2, (3, 1, 4), 3)
    lay = layers or R.default_layers(len(params))
    exact = setadam_exact(
        _fr(params),
        [_fr(g) for g in grads],
        lay,
        lr=cfg.lr,
        b1=cfg.betas[0],
        b2=cfg.betas[1],
        eps=cfg.eps,
        tau=cfg.tau,
        **extra,  # type: ignore[arg-type]
    )
    _assert_close(R.run(params, grads, cfg, layers=layers), exact)


def test_hand_worked_first_step() -> None:
    """t = 1, one layer v = (1-b2) g^2: with g = (1, 1) v is constant, c = 1, and
    w = sqrt(g^2 + eps) = sqrt(1 + eps); wt = (1 - tau) w; update = -lr * g / wt."""
    cfg = R.SETAdamConfig(lr=0.1, eps=0.25, tau=0.5)
    p, _st, tr = R.step([np.zeros(2)], [np.ones(2)], R.init([np.zeros(2)], cfg), cfg, trace=True)
    assert isinstance(tr, R.SETAdamTrace)
    assert tr.layers[0].cos2 == 1.0
    np.testing.assert_array_equal(tr.w[0], np.sqrt(1.25))
    np.testing.assert_allclose(p[0], -0.1 / (0.5 * np.sqrt(1.25)), rtol=4 * U)


def test_the_check_detects_a_wrong_formula() -> None:
    """The exact comparison is not vacuous: eps moved outside the square root is caught."""
    params, grads = _problem(3, (4,), 2)
    exact = setadam_exact(
        _fr(params), [_fr(g) for g in grads], ((0,),), lr=0.01, b1=0.9, b2=0.999, eps=1e-4, tau=0.5
    )
    wrong = R.run(params, grads, R.SETAdamConfig(lr=0.01, eps=1e-5, tau=0.5))
    with pytest.raises(AssertionError):
        _assert_close(wrong, exact)


def test_the_check_tells_the_eps_placements_apart() -> None:
    """tf's eps on the unscaled root is not torch's: at eps ~ sqrt(v) the two differ by far more
    than the exact comparison allows, in both directions."""
    params, grads = _problem(4, (4,), 2)
    kw = dict(lr=0.01, b1=0.9, b2=0.999, eps=1e-3)
    for tf in (False, True):
        exact = adam_exact(_fr(params), [_fr(g) for g in grads], tf=tf, **kw)  # type: ignore[arg-type]
        other = R.AdamConfig(lr=0.01, eps=1e-3, eps_mode="torch" if tf else "tf")
        with pytest.raises(AssertionError):
            _assert_close(R.run(params, grads, other), exact)
